"""The render task: a job's state transitions around `workers.render.render`.

Bad input fails its own job with a code and a message, and the worker lives on. A job
runs at most once to completion: a redelivered message finds it finished and is acked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from jobs.errors import JobCanceled, JobError, OutOfMemory, SchemaError
from jobs.schema import Job
from jobs.states import ErrorCode, JobState
from jobs.tiers import next_larger, queue_name
from transport.messages import RENDER_TASK
from transport.store import JobRecord, TransitionRefused
from workers import webhooks
from workers.heartbeat import live_workers
from workers.render import Hooks, render
from workers.runtime import Runtime, runtime

log = logging.getLogger(__name__)


def bind(app: Celery) -> None:
    """Register `darkroom.render` on `app`."""

    @app.task(name=RENDER_TASK, bind=True)
    def render_task(self: Task, job: dict[str, Any]) -> None:
        rt = runtime(
            app.conf.darkroom_settings, app.conf.darkroom_tier, app.conf.get("darkroom_slots", 1)
        )
        run(rt, app, job, self.request.id, self.request.hostname or "unknown")


def run(rt: Runtime, app: Celery, payload: dict[str, Any], task_id: str, worker: str) -> None:
    incarnation = app.conf.get("darkroom_incarnation")
    # 1. decode: a message that is not a job fails that job, nothing else
    try:
        job = Job.from_json(payload)
    except SchemaError as exc:
        _fail_undecodable(rt, task_id, str(exc))
        return

    # 2. claim: skip finished, canceled and duplicate deliveries; count the attempt
    if not claim(rt, job, worker, incarnation):
        return

    # 3. render, and record how it ended
    try:
        result = render(job, rt.settings, _hooks(rt, job))
    except SoftTimeLimitExceeded:
        _finish(
            rt,
            job,
            JobState.FAILED,
            error_code=ErrorCode.TIMEOUT.value,
            error_message=f"render exceeded {rt.settings.render_time_limit_s} s",
        )
    except JobCanceled as exc:
        _finish(rt, job, JobState.CANCELED, error_code=exc.code.value, error_message=exc.message)
    except JobError as exc:
        if not (exc.retryable and _retry(rt, app, job, exc)):
            _finish(rt, job, JobState.FAILED, error_code=exc.code.value, error_message=exc.message)
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job.id)
        _finish(
            rt,
            job,
            JobState.FAILED,
            error_code=ErrorCode.INTERNAL.value,
            error_message=f"internal error ({type(exc).__name__}: {exc}); "
            "the worker log has the traceback",
        )
    else:
        _finish(
            rt, job, JobState.SUCCEEDED, output=result.output, progress="1", result=result.as_dict()
        )


def claim(rt: Runtime, job: Job, worker: str, incarnation: str | None = None) -> bool:
    """Start the job on this worker, or say why not (finished, held elsewhere, expired,
    past its deadline, out of attempts)."""
    record = rt.store.get(job.id)
    if record is None:
        log.warning("job %s has no record (expired?); dropping its message", job.id)
        return False
    if record.state.terminal:
        log.info("job %s is already %s; acking the redelivery", job.id, record.state)
        return False
    if record.state is JobState.RUNNING and _held_elsewhere(rt, record, worker, incarnation):
        log.warning(
            "job %s is running on live worker %s; skipping duplicate", job.id, record.worker
        )
        return False
    if record.state is JobState.QUEUED and job.cancel_after and time.time() > job.cancel_after:
        _finish(
            rt,
            job,
            JobState.CANCELED,
            error_code=ErrorCode.CANCELED.value,
            error_message="not started before its cancel_after deadline",
        )
        return False
    crashes = record.attempts - record.retries  # deliberate re-sends are not crashes
    if crashes >= rt.settings.max_attempts:
        _finish(
            rt,
            job,
            JobState.FAILED,
            error_code=ErrorCode.INTERNAL.value,
            error_message=f"gave up after {crashes} attempts; the worker stopped during each",
        )
        return False
    try:
        rt.store.transition(
            job.id,
            JobState.RUNNING,
            attempt=True,
            worker=worker,
            progress="0",
            incarnation=incarnation or "",
        )
    except TransitionRefused as refused:
        log.info("job %s not started: %s", job.id, refused)
        return False
    return True


def _held_elsewhere(rt: Runtime, record: JobRecord, worker: str, incarnation: str | None) -> bool:
    """Another live worker (or this name's live start, if not us) is running the job."""
    if not record.worker or (record.worker, record.incarnation or None) == (worker, incarnation):
        return False
    beat = live_workers(rt.redis, rt.keys).get(record.worker)
    return beat is not None and beat.get("incarnation") in (None, record.incarnation)


def _finish(rt: Runtime, job: Job, state: JobState, **fields: Any) -> None:
    try:
        rt.store.transition(job.id, state, **fields)
    except TransitionRefused as refused:
        log.warning("job %s: %s", job.id, refused)
    else:
        webhooks.job_finished(rt.redis, rt.keys, job, state)


def _retry(rt: Runtime, app: Celery, job: Job, exc: JobError) -> bool:
    """Send the job again; False: give up. Out of memory goes to the next larger tier
    (so at most once per tier); a storage outage retries on the same queue with backoff
    for up to `settings.retry_budget_s`, without spending the job's crash attempts."""
    record = rt.store.get(job.id)
    if record is None:
        return False
    now = time.time()
    first = record.first_retry_at or now
    tier = rt.tier
    if isinstance(exc, OutOfMemory):
        larger = next_larger(rt.tier, rt.settings.tiers())
        if larger is None:
            return False
        tier = larger
    elif now - first > rt.settings.retry_budget_s:
        return False
    queue = queue_name(tier, job.mode)
    rt.store.transition(
        job.id,
        JobState.RETRYING,
        error_code=exc.code.value,
        error_message=f"{exc.message}; retrying on {queue}",
        retries=record.retries + 1,
        first_retry_at=repr(first),
    )
    app.send_task(
        RENDER_TASK,
        kwargs={"job": job.model_dump(mode="json", by_alias=True)},
        task_id=job.id,
        queue=queue,
        priority=job.priority,
        countdown=min(2**record.retries, 30),
    )
    return True


def _fail_undecodable(rt: Runtime, task_id: str, message: str) -> None:
    log.error("job %s does not decode: %s", task_id, message)
    with contextlib.suppress(TransitionRefused):
        # A queued job may only fail from running: claim it first, or it stays queued forever.
        rt.store.transition(task_id, JobState.RUNNING, attempt=True)
        rt.store.transition(
            task_id,
            JobState.FAILED,
            error_code=ErrorCode.INPUT_INVALID.value,
            error_message=f"job does not decode: {message}",
        )


def _hooks(rt: Runtime, job: Job) -> Hooks:
    """Progress writes and cancel checks, each at most a few times a second."""
    last = {"progress": 0.0, "cancel": 0.0}

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last["progress"] >= 0.25:
            last["progress"] = now
            rt.store.set_progress(job.id, fraction)

    def canceled() -> bool:
        now = time.monotonic()
        if now - last["cancel"] < 0.5:
            return False
        last["cancel"] = now
        return rt.redis.hget(rt.keys.job(job.id), "cancel_requested") == b"1"

    def load_seconds() -> float:
        stats = rt.model_stats()
        return float(stats.load_seconds) if stats is not None else 0.0

    return Hooks(
        progress=progress,
        canceled=canceled,
        models=_LazyModels(rt),
        model_load_seconds=load_seconds,
    )


class _LazyModels:
    """What ops see as `ctx.models`: the store at once (no torch), the resident-model
    cache (and torch) only when an op first asks it for a pipeline."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    @property
    def store(self) -> Any:
        return self._rt.model_store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rt.models, name)
