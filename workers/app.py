"""The Celery app, configured from `Settings` with the behaviour FACTS.md measured.

- prefetch 1 and late acks: a worker holds one job at a time and acks it only when done;
- reject on worker lost: a killed child's job goes back on its queue;
- priorities 0-9 on separate Redis lists (`sep=":"`), consumed in `-Q` order;
- visibility timeout above the longest render, or a long render runs twice;
- JSON only; no result backend (job state lives in darkroom's own Redis hash).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from celery import Celery

from jobs.settings import Settings
from transport.embedded import redis_url
from transport.messages import PRIORITY_STEPS, SEP

if TYPE_CHECKING:
    from workers.resident import ResidentStats
    from workers.steps import StepStats


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "sep": SEP,
            "priority_steps": list(PRIORITY_STEPS),
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "health_check_interval": 10,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.render_time_limit_s + 30,
        "task_soft_time_limit": settings.render_time_limit_s,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_enable_remote_control": True,
    }


def create_app(settings: Settings) -> Celery:
    """A Celery app bound to `settings`; importing `workers.tasks` registers the task."""
    app = Celery("darkroom", set_as_current=True)
    app.conf.update(celery_config(settings, redis_url(settings)))
    app.conf.darkroom_settings = settings
    import workers.tasks

    workers.tasks.bind(app)
    return app


def install_worker_hooks(app: Celery, settings: Settings, hostname: str) -> None:
    """What a serving worker adds to the app: heartbeats (and the dead-worker sweep),
    JSON logs with the job id, Prometheus metrics. Once per worker process.

    Raises:
        NameInUse: a live worker already beats under `hostname`.
        EvictingRedis: Redis may evict darkroom's keys.
    """
    _beat_while_serving(app, settings, hostname)
    _observe(app, settings)


def _observe(app: Celery, settings: Settings) -> None:
    """JSON logs with the job id on every line, and Prometheus metrics."""
    from workers import logs, metrics
    from workers.runtime import current

    def model_stats() -> ResidentStats | None:
        rt = current()
        return rt.model_stats() if rt is not None else None

    def step_stats() -> StepStats | None:
        rt = current()
        return rt.steps.stats if rt is not None and rt.steps is not None else None

    logs.install(app)
    metrics.install(app, settings, model_stats=model_stats, step_stats=step_stats)


def _held_job_ids() -> list[str]:
    """Jobs this worker process has received and not yet finished (Celery's own book,
    kept in the main process for every pool)."""
    from celery.worker import state

    return list(state.requests)


def _beat_while_serving(app: Celery, settings: Settings, hostname: str) -> None:
    """Check Redis, take the worker's name and beat from now on (a live name is never
    shared); the beat says `ready` once the worker consumes."""
    from celery import signals

    from transport.embedded import connect
    from transport.keyspace import Keyspace
    from transport.redis_config import check_redis
    from workers import affinity
    from workers.heartbeat import Heartbeat, claim_name

    redis, keys = connect(settings), Keyspace(settings.key_prefix)
    check_redis(redis, f"worker {hostname}")
    incarnation = app.conf.get("darkroom_incarnation")
    claim_name(redis, keys, hostname, incarnation, settings.heartbeat_ttl_s)
    redis.delete(keys.resident(hostname))  # a predecessor's processes hold nothing now
    tier = app.conf.get("darkroom_tier")
    beat = Heartbeat(
        redis=redis,
        keys=keys,
        hostname=hostname,
        info={
            "tier": tier.name if tier else None,
            "queues": app.conf.get("darkroom_queues", []),
            "incarnation": incarnation,
            "started_at": time.time(),
            "ready": False,
            "slots": app.conf.get("darkroom_slots", 1),
        },
        holding=_held_job_ids,
        resident=lambda: affinity.resident_of(redis, keys, hostname),
        interval_s=settings.heartbeat_interval_s,
        ttl_s=settings.heartbeat_ttl_s,
    )
    beat.start()
    affinity.install(app)

    @signals.worker_ready.connect(weak=False)
    def ready(**_: Any) -> None:
        beat.info["ready"] = True
        beat.beat()

    @signals.worker_shutdown.connect(weak=False)
    def stop(**_: Any) -> None:
        beat.stop()


def serve_both_lanes(
    app: Celery, preview_queues: list[str], preview_slots: int, final_slots: int
) -> None:
    """One model-owning worker process for both lanes of its card: Celery's own task
    consumer takes the final queues (at most `final_slots` messages held), and a second
    consumer on its own channel takes `preview_queues` (the worker's direct preview
    queue first, then the shared one; at most `preview_slots` held), so
    finals never fill the slots previews need. Both hand their messages to Celery's task
    handler: the same requests, acks, signals and warm shutdown as any task. Run with a
    `threads` pool of `final_slots + preview_slots`; the step scheduler
    (`workers.steps`) shares the card between them.
    """
    from celery import bootsteps
    from kombu import Consumer, Exchange, Queue

    class PreviewConsumer(bootsteps.ConsumerStep):  # type: ignore[misc]
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, c: Any, **kwargs: Any) -> None:
            # Celery sizes the task consumer's prefetch from the pool; ours is the finals'.
            c.initial_prefetch_count = final_slots
            self.c = c
            super().__init__(c, **kwargs)

        def get_consumers(self, channel: Any) -> list[Consumer]:
            channel.basic_qos(0, preview_slots, False)
            queues = [Queue(name, Exchange(name), routing_key=name) for name in preview_queues]
            handler = self.c.create_task_handler()
            return [Consumer(channel, queues=queues, on_message=handler, accept=["json"])]

    app.steps["consumer"].add(PreviewConsumer)
    app.conf.darkroom_both_lanes = True
