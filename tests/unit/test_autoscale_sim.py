"""The bench's simulation on a short trace: the preview target holds and GPU time drops."""

from __future__ import annotations

from bench.autoscale_sim import TraceSpec, compare, table

SHORT = TraceSpec(
    night_s=1800, batch_size=400, batch_at_s=1800, burst_at_s=2400,
    burst_ramp_s=300, burst_hold_s=240, burst_peak_rps=15.0, tail_s=900,
)  # fmt: skip


def test_autoscaling_meets_the_preview_target_with_fewer_gpu_minutes() -> None:
    scaled, peak, mean = compare(SHORT, seed=3)
    assert scaled.unfinished == 0 and peak.unfinished == 0
    assert len(scaled.preview_waits) > 3000
    assert scaled.preview_p(0.95) < 0.2
    assert scaled.gpu_minutes < 0.6 * peak.gpu_minutes
    # the batch drains within its 20-minute target despite cold starts
    assert scaled.batch_makespan_s < 1200 + 120
    # a pool sized for the mean load is cheaper but misses the preview target badly
    assert mean.preview_p(0.95) > 1.0
    assert "autoscaled" in table([scaled, peak, mean])


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    first, second = compare(SHORT, seed=5)[0], compare(SHORT, seed=5)[0]
    assert first.gpu_minutes == second.gpu_minutes
    assert first.preview_waits == second.preview_waits
