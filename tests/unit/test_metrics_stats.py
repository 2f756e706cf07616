"""Worker metrics that need no Redis: model-cache deltas, webhooks, recipe ops."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.settings import Settings
from workers import metrics
from workers.metrics import WorkerMetrics


@dataclass
class Stats:
    loads: int = 0
    load_seconds: float = 0.0
    hits: int = 0
    evictions: int = 0


def values(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_model_cache_counters_follow_the_stats_object_by_deltas() -> None:
    stats, registry = Stats(), CollectorRegistry()
    wm = WorkerMetrics(Settings(), model_stats=lambda: stats, registry=registry)
    stats.loads, stats.load_seconds, stats.hits = 1, 4.5, 0
    wm.sync_models()
    stats.hits = 7
    wm.sync_models()
    wm.sync_models()  # nothing new: nothing added
    seen = values(registry)
    assert seen[("darkroom_model_events_total", (("event", "load"),))] == 1
    assert seen[("darkroom_model_events_total", (("event", "hit"),))] == 7
    assert seen[("darkroom_model_load_seconds_total", ())] == 4.5


def test_step_scheduler_counters_follow_its_stats_by_deltas() -> None:
    from workers.steps import StepStats

    stats, registry = StepStats(), CollectorRegistry()
    wm = WorkerMetrics(Settings(), step_stats=lambda: stats, registry=registry)
    stats.yields, stats.overtakes, stats.yielded_s = 2, 3, 0.25
    wm.sync_steps()
    stats.yields = 5
    wm.sync_steps()
    seen = values(registry)
    assert seen[("darkroom_final_yields_total", ())] == 5
    assert seen[("darkroom_preview_overtakes_total", ())] == 3
    assert seen[("darkroom_final_yield_seconds_total", ())] == 0.25


def test_recipe_ops_are_read_from_the_stored_job() -> None:
    job = '{"recipe": {"steps": [{"op": "denoise", "params": {}}, {"op": "resize"}]}}'
    assert metrics._ops(job) == ["denoise", "resize"]
    assert metrics._ops("not json") == []
    assert metrics._ops(None) == []


def test_webhook_deliveries_are_counted_once_installed() -> None:
    registry = CollectorRegistry()
    saved = metrics._current
    try:
        metrics._current = None
        metrics.record_webhook("delivered", 0.1)  # not installed: a no-op, no error
        metrics._current = WorkerMetrics(Settings(), registry=registry)
        metrics.record_webhook("delivered", 0.2)
        metrics.record_webhook("failed")
    finally:
        metrics._current = saved
    seen = values(registry)
    assert seen[("darkroom_webhook_deliveries_total", (("outcome", "delivered"),))] == 1
    assert seen[("darkroom_webhook_deliveries_total", (("outcome", "failed"),))] == 1
    assert seen[("darkroom_webhook_seconds_count", ())] == 1
