"""Prometheus metrics of a worker, in prometheus-client's multiprocess mode.

A prefork worker runs tasks in child processes; their counters only reach the exporter
through files in `settings.metrics_dir` (FACTS.md). So, in this order:

1. `install(app, settings)` points `PROMETHEUS_MULTIPROC_DIR` at that folder *before*
   prometheus_client is first imported (this module imports it lazily), and hooks
   Celery's signals; `worker_init` empties the folder, `worker_process_shutdown` marks
   the child dead.
2. Each task's outcome is read from the job's own record in Redis at `task_postrun`
   (the render task finishes its job itself, so Celery's state says little): deliveries
   by tier/lane/state, steps by op, wait (queued -> running), run time, failures by
   error code, retries; plus resident-model counters from a stats object, GPU memory
   (only if torch is already loaded) and webhook deliveries (`record_webhook`).
3. `serve(settings)` starts the HTTP exporter: the children's files, plus a
   `QueueCollector` that reads depth and oldest-job age from Redis at scrape time.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from transport.messages import RENDER_TASK

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis

    from jobs.settings import Settings
    from workers.steps import StepStats

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
_FIELDS = ("state", "queue", "queued_at", "running_at", "error_code", "job")


class ModelStats(Protocol):
    """What `workers.resident.ResidentStats` counts; every field only grows."""

    loads: int
    load_seconds: float
    hits: int
    evictions: int


def prepare(metrics_dir: Path, *, empty: bool) -> None:
    """Point prometheus_client's multiprocess mode at `metrics_dir`; optionally empty it."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(metrics_dir.resolve())
    if "prometheus_client" in sys.modules and not _multiprocess_active():
        # Imported early (the `celery` command loads flower's plugin, which imports it):
        # values are made per metric child, so switching the class now still works.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    if empty:
        for stale in metrics_dir.glob("*.db"):
            stale.unlink(missing_ok=True)


def _multiprocess_active() -> bool:
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


@dataclass
class WorkerMetrics:
    """The metric objects, built once prometheus_client may be imported."""

    settings: Settings
    model_stats: Callable[[], ModelStats | None] | None = None
    step_stats: Callable[[], StepStats | None] | None = None
    """The step scheduler's counters, in a process serving both lanes (`workers.steps`)."""
    registry: Any = None
    """None: prometheus_client's default registry (multiprocess mode ignores it anyway)."""
    _started: dict[str, float] = field(default_factory=dict)
    _seen_models: dict[str, float] = field(default_factory=dict)
    _seen_steps: dict[str, float] = field(default_factory=dict)
    _sync: threading.Lock = field(default_factory=threading.Lock)
    """Threads of one process (`--lane both`) finish tasks concurrently."""
    _redis: tuple[int, Redis] | None = None

    def __post_init__(self) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = self.registry or REGISTRY
        tl = ("tier", "lane")

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, tl, buckets=buckets, registry=registry)

        self.jobs = counter(
            "darkroom_jobs", "deliveries by the state they ended in", (*tl, "state")
        )
        self.steps = counter(
            "darkroom_steps", "recipe steps by op and outcome", ("op", *tl, "state")
        )
        self.wait = histogram("darkroom_job_wait_seconds", "queued -> running", WAIT_BUCKETS)
        self.run = histogram("darkroom_job_run_seconds", "time in the render task", RUN_BUCKETS)
        self.failures = counter("darkroom_job_failures", "failed jobs by error code", (*tl, "code"))
        self.retries = counter("darkroom_job_retries", "deliveries that ended in a retry", tl)
        self.dead_letters = counter(
            "darkroom_dead_letters", "messages dead-lettered (their job could not run)", ("reason",)
        )
        self.exceptions = counter(
            "darkroom_task_exceptions", "exceptions that escaped a task", ("task", "exception")
        )
        self.model = counter("darkroom_model_events", "resident-model cache events", ("event",))
        self.model_load = counter("darkroom_model_load_seconds", "seconds spent loading models")
        self.yields = counter(
            "darkroom_final_yields", "times a final stepped aside between steps for previews"
        )
        self.yield_time = counter(
            "darkroom_final_yield_seconds", "seconds finals waited between steps for previews"
        )
        self.overtakes = counter(
            "darkroom_preview_overtakes", "previews that ran between two steps of a final"
        )
        self.webhooks = counter("darkroom_webhook_deliveries", "webhooks by outcome", ("outcome",))
        self.webhook_time = Histogram(
            "darkroom_webhook_seconds", "webhook delivery time", registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.gpu = Gauge(
            "darkroom_gpu_memory_bytes", "torch CUDA memory of a worker process",
            ["device", "kind"], multiprocess_mode="livesum", registry=registry,
        )  # fmt: skip

    # -- task hooks --------------------------------------------------------------------

    def task_started(self, task_id: str) -> None:
        self._started[task_id] = time.monotonic()

    def task_finished(self, task_id: str, routing_key: str | None) -> None:
        started = self._started.pop(task_id, None)
        record = self._record(task_id)
        queue = record.get("queue") or routing_key or "unknown.unknown"
        tier, _, lane = queue.partition(".")
        state = record.get("state") or "unknown"
        self.jobs.labels(tier, lane, state).inc()
        for op in _ops(record.get("job")):
            self.steps.labels(op, tier, lane, state).inc()
        if started is not None:
            self.run.labels(tier, lane).observe(time.monotonic() - started)
        queued_at, running_at = record.get("queued_at"), record.get("running_at")
        if queued_at and running_at and state != "queued":
            self.wait.labels(tier, lane).observe(max(0.0, float(running_at) - float(queued_at)))
        if state == "failed":
            self.failures.labels(tier, lane, record.get("error_code") or "internal").inc()
        elif state == "retrying":
            self.retries.labels(tier, lane).inc()
        with self._sync:
            self.sync_models()
            self.sync_steps()
        self.sync_gpu()

    def task_raised(self, task_name: str, exception: BaseException) -> None:
        self.exceptions.labels(task_name, type(exception).__name__).inc()

    # -- stats read from elsewhere ------------------------------------------------------

    def sync_models(self) -> None:
        """Add what the resident-model stats counted since the last sync."""
        stats = self.model_stats() if self.model_stats is not None else None
        if stats is None:
            return
        for event, now in (
            ("load", stats.loads),
            ("hit", stats.hits),
            ("eviction", stats.evictions),
        ):
            delta = now - self._seen_models.get(event, 0)
            if delta > 0:
                self.model.labels(event).inc(delta)
            self._seen_models[event] = now
        delta_s = stats.load_seconds - self._seen_models.get("seconds", 0.0)
        if delta_s > 0:
            self.model_load.inc(delta_s)
        self._seen_models["seconds"] = stats.load_seconds

    def sync_steps(self) -> None:
        """Add what the step scheduler counted since the last sync."""
        stats = self.step_stats() if self.step_stats is not None else None
        if stats is None:
            return
        for metric, name, now in (
            (self.yields, "yields", float(stats.yields)),
            (self.yield_time, "seconds", stats.yielded_s),
            (self.overtakes, "overtakes", float(stats.overtakes)),
        ):
            delta = now - self._seen_steps.get(name, 0.0)
            if delta > 0:
                metric.inc(delta)
            self._seen_steps[name] = now

    def sync_gpu(self) -> None:
        """GPU memory of this process, only where torch is already loaded (never import it)."""
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return
        for index in range(torch.cuda.device_count()):
            device = str(index)
            self.gpu.labels(device, "allocated").set(torch.cuda.memory_allocated(index))
            self.gpu.labels(device, "reserved").set(torch.cuda.memory_reserved(index))
            self.gpu.labels(device, "peak").set(torch.cuda.max_memory_allocated(index))

    def _record(self, job_id: str) -> dict[str, str]:
        try:
            raw = self._connection().hmget(f"{self.settings.key_prefix}:job:{job_id}", _FIELDS)
        except Exception:  # metrics must never fail a task
            log.warning("metrics: cannot read job %s", job_id, exc_info=True)
            return {}
        return {k: _text(v) for k, v in zip(_FIELDS, raw, strict=True) if v}

    def _connection(self) -> Redis:
        # one connection per process: a forked child must not share its parent's socket
        if self._redis is None or self._redis[0] != os.getpid():
            from transport.embedded import connect

            self._redis = (os.getpid(), connect(self.settings))
        return self._redis[1]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ops(job_json: str | None) -> list[str]:
    if not job_json:
        return []
    try:
        steps = json.loads(job_json)["recipe"]["steps"]
        return [str(step["op"]) for step in steps]
    except (ValueError, KeyError, TypeError):
        return []


_current: WorkerMetrics | None = None


def current() -> WorkerMetrics | None:
    """The installed metrics of this process, or None."""
    return _current


def record_webhook(outcome: str, seconds: float | None = None) -> None:
    """Count one webhook delivery (`delivered`, `failed`, `gave_up`); no-op if not installed."""
    if _current is None:
        return
    _current.webhooks.labels(outcome).inc()
    if seconds is not None:
        _current.webhook_time.observe(seconds)


def record_dead_letter(reason: str) -> None:
    """Count one dead-lettered message (`record_missing`); no-op if not installed."""
    if _current is not None:
        _current.dead_letters.labels(reason).inc()


def install(
    app: Celery,
    settings: Settings,
    model_stats: Callable[[], ModelStats | None] | None = None,
    step_stats: Callable[[], StepStats | None] | None = None,
) -> WorkerMetrics:
    """Hook metrics into `app`'s signals; serve them on `settings.metrics_port` when ready."""
    global _current
    if settings.metrics_dir is not None:
        prepare(settings.metrics_dir, empty=False)
    _current = WorkerMetrics(settings, model_stats, step_stats)
    _connect_signals(_current, settings)
    return _current


def _connect_signals(metrics: WorkerMetrics, settings: Settings) -> None:
    from celery import signals

    @signals.worker_init.connect(weak=False)
    def _fresh_dir(**_: Any) -> None:
        # before any child forks: counts of a previous run must not add up with ours
        if settings.metrics_dir is not None:
            prepare(settings.metrics_dir, empty=True)

    @signals.worker_ready.connect(weak=False)
    def _serve(**_: Any) -> None:
        if settings.metrics_port is None:
            return
        try:
            serve(settings, addr=settings_addr(settings))
        except OSError as exc:  # port taken (two workers, one port): run without
            log.warning("metrics exporter not started on :%s: %s", settings.metrics_port, exc)

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
        if task is not None and task.name == RENDER_TASK:
            metrics.task_started(task_id)

    @signals.task_postrun.connect(weak=False)
    def _postrun(task_id: str = "", task: Any = None, **_: Any) -> None:
        if task is not None and task.name == RENDER_TASK:
            info = getattr(task.request, "delivery_info", None) or {}
            metrics.task_finished(task_id, info.get("routing_key"))

    @signals.task_failure.connect(weak=False)
    def _failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        if sender is not None and exception is not None:
            metrics.task_raised(sender.name, exception)

    @signals.worker_process_shutdown.connect(weak=False)
    def _child_exit(pid: int | None = None, **_: Any) -> None:
        if settings.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid or os.getpid(), str(settings.metrics_dir))


def settings_addr(settings: Settings) -> str:
    """Address the exporter binds: `metrics_addr` if Settings has one, else loopback."""
    return str(getattr(settings, "metrics_addr", None) or "127.0.0.1")


def registry_for(settings: Settings, redis: Redis | None = None) -> Any:
    """The exporter's registry: the children's files, plus queue state from Redis."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from jobs.tiers import all_queues
    from transport.keyspace import Keyspace
    from workers.autoscale.collector import QueueCollector

    registry = CollectorRegistry()
    if settings.metrics_dir is not None:
        MultiProcessCollector(registry, path=str(settings.metrics_dir))
    if redis is None:
        from transport.embedded import connect

        redis = connect(settings)
    keys = Keyspace(settings.key_prefix)
    registry.register(QueueCollector(redis, keys, all_queues(settings.tiers())))
    return registry


def serve(settings: Settings, addr: str = "127.0.0.1", port: int | None = None) -> Any:
    """Start the HTTP exporter in a thread; returns the server (`.shutdown()` stops it).

    Raises:
        ValueError: no port given and none configured.
    """
    from prometheus_client import start_http_server

    bind = port or settings.metrics_port
    if bind is None:
        raise ValueError("no port: set DARKROOM_METRICS_PORT or pass port=")
    server, _thread = start_http_server(bind, addr=addr, registry=registry_for(settings))
    log.info("metrics on http://%s:%d/metrics", addr, server.server_port)
    return server
