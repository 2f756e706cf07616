"""The controller's decisions: backlog drain, warm minimum, scale to zero, no flapping."""

from __future__ import annotations

from workers.autoscale.controller import Controller, QueueSample
from workers.autoscale.pools import Pool


def final_pool(**overrides: object) -> Pool:
    fields: dict[str, object] = {
        "queue": "a10.final", "min_replicas": 0, "max_replicas": 16, "drain_time_s": 600,
        "service_time_s": 6.0, "idle_s": 300, "scale_down_delay_s": 120,
    }  # fmt: skip
    return Pool.model_validate(fields | overrides)


def preview_pool(**overrides: object) -> Pool:
    fields: dict[str, object] = {
        "queue": "a10.preview", "min_replicas": 2, "max_replicas": 8, "target_wait_s": 0.2,
        "service_time_s": 0.1, "target_utilization": 0.5, "load_smoothing": 1.0,
    }  # fmt: skip
    return Pool.model_validate(fields | overrides)


def sample(queue: str, depth: int, in_flight: int = 0, service: float | None = None) -> QueueSample:
    return QueueSample(queue, depth, in_flight, service)


def test_a_backlog_gets_enough_replicas_to_drain_within_the_target() -> None:
    # 1,000 jobs x 6 s / 600 s = 10 replicas drain the batch in ten minutes
    decision = Controller().decide(final_pool(), sample("a10.final", 1000), current=0, now=0)
    assert decision.desired == 10
    assert "1000 queued" in decision.reason


def test_measured_service_time_beats_the_configured_prior() -> None:
    decision = Controller().decide(
        final_pool(), sample("a10.final", 1000, service=1.2), current=0, now=0
    )
    assert decision.desired == 2


def test_desired_replicas_never_exceed_the_pool_maximum() -> None:
    decision = Controller().decide(final_pool(), sample("a10.final", 50_000), current=4, now=0)
    assert decision.desired == 16
    assert decision.wanted > 16
    assert "capped at max 16" in decision.reason


def test_a_preview_pool_keeps_its_warm_minimum_when_idle() -> None:
    controller = Controller()
    for t in range(0, 3600, 15):
        decision = controller.decide(preview_pool(), sample("a10.preview", 0), current=2, now=t)
        assert decision.desired == 2


def test_preview_headroom_follows_jobs_in_flight() -> None:
    # 3 previews running at 50 % target utilisation ask for 6 replicas
    decision = Controller().decide(
        preview_pool(), sample("a10.preview", 0, in_flight=3), current=2, now=0
    )
    assert decision.desired == 6


def test_a_final_pool_scales_to_zero_only_after_its_idle_period() -> None:
    controller, pool = Controller(), final_pool()
    controller.decide(pool, sample("a10.final", 0, in_flight=1), current=1, now=0)
    seen = {
        t: controller.decide(pool, sample("a10.final", 0), current=1, now=t).desired
        for t in range(15, 900, 15)
    }
    assert all(n == 1 for t, n in seen.items() if t < pool.idle_s)
    first_zero = min(t for t, n in seen.items() if n == 0)
    assert pool.idle_s <= first_zero <= pool.idle_s + pool.scale_down_delay_s + 15


def test_a_queued_job_wakes_a_pool_at_zero() -> None:
    decision = Controller().decide(final_pool(), sample("a10.final", 1), current=0, now=0)
    assert decision.desired == 1


def test_scale_up_is_immediate_and_scale_down_waits_for_the_window() -> None:
    controller, pool = Controller(), final_pool()
    up = controller.decide(pool, sample("a10.final", 800), current=2, now=0)
    assert up.desired == 8
    # the backlog vanishes; the pool stays at 8 until the window has no wish above 1
    downs = [
        controller.decide(pool, sample("a10.final", 0, in_flight=1), current=8, now=t).desired
        for t in range(15, 300, 15)
    ]
    assert downs[0] == 8
    assert downs[-1] < 8
    assert all(n == 8 for t, n in zip(range(15, 300, 15), downs, strict=True) if t <= 120)


def test_a_noisy_load_does_not_flap() -> None:
    # in-flight alternating 2 / 3 every tick must not toggle the replica count
    controller, pool = Controller(), preview_pool(min_replicas=1)
    current, changes = 1, 0
    for i in range(200):
        decision = controller.decide(
            pool, sample("a10.preview", 0, in_flight=2 + i % 2), current=current, now=i * 15
        )
        changes += decision.changes
        current = decision.desired
    assert changes <= 2
    assert current == 6


def test_small_shrinks_inside_the_tolerance_are_ignored() -> None:
    pool = final_pool(tolerance=0.25, scale_down_delay_s=0)
    decision = Controller().decide(pool, sample("a10.final", 700), current=8, now=0)
    assert decision.desired == 8  # 7 wanted: a 12 % shrink is inside 25 %
