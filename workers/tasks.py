"""The render task: a job's state transitions around `workers.render.render`.

Bad input fails its own job with a code and a message, and the worker lives on. A job
runs as one attempt at a time (`transport.attempts`): a duplicate delivery finds it
finished or held by a live attempt and is acked, and every write of an attempt that lost
the job is refused. A message whose job record is gone is dead-lettered, not dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from jobs.errors import BackToLocal, JobCanceled, JobError, OutOfMemory, SchemaError
from jobs.schema import Job, Lane
from jobs.states import ErrorCode, JobState
from jobs.tiers import next_larger, queue_name, route
from storage import open_location
from transport.attempts import Attempt, ClaimRefused
from transport.messages import RENDER_TASK
from transport.redis_config import eviction_problem
from transport.store import CancelPending, JobRecord, TransitionRefused
from workers import affinity, metrics, webhooks
from workers.lease import AttemptLost, Lease, patiently
from workers.render import Hooks, RenderResult, output_key, render
from workers.runtime import Runtime, RuntimeModels, runtime

log = logging.getLogger(__name__)


def bind(app: Celery) -> None:
    """Register `darkroom.render` on `app`."""

    @app.task(name=RENDER_TASK, bind=True)
    def render_task(self: Task, job: dict[str, Any]) -> None:
        rt = runtime(
            app.conf.darkroom_settings,
            app.conf.darkroom_tier,
            app.conf.get("darkroom_slots", 1),
            both_lanes=app.conf.get("darkroom_both_lanes", False),
        )
        lane = Lane.PREVIEW if job.get("mode") == Lane.PREVIEW.value else Lane.FINAL
        try:
            with rt.holding_job(lane):
                run(rt, app, job, self.request.id, self.request.hostname or "unknown")
        finally:
            rt.release_models()


def run(rt: Runtime, app: Celery, payload: dict[str, Any], task_id: str, worker: str) -> None:
    incarnation = app.conf.get("darkroom_incarnation")
    # 1. decode: a message that is not a job fails that job, nothing else
    try:
        job = Job.from_json(payload)
    except SchemaError as exc:
        _fail_undecodable(rt, task_id, str(exc))
        return

    # 2. claim: skip finished, canceled and duplicate deliveries; start one attempt
    attempt = claim(rt, job, worker, incarnation)
    if attempt is None:
        return

    # 3. render while this attempt's lease is kept alive, and record how it ended
    every = min(rt.settings.heartbeat_interval_s, rt.settings.heartbeat_ttl_s / 3)
    with Lease(rt.attempts, attempt, every, rt.settings.retry_budget_s) as lease:
        _render_and_record(rt, app, job, lease)


def _render_and_record(rt: Runtime, app: Celery, job: Job, lease: Lease) -> None:
    fence = lease.attempt.id
    # Celery's time limits need prefork; a threads-pool worker (--lane both) checks the
    # render time limit itself between steps.
    deadline = time.monotonic() + rt.settings.render_time_limit_s
    hooks = _hooks(rt, job, lease)
    if rt.steps is not None:
        stop = hooks.canceled
        hooks.canceled = lambda: stop() or time.monotonic() > deadline
    try:
        result = render(job, rt.settings, hooks)
    except AttemptLost as lost:
        log.warning("%s; this attempt writes nothing", lost)
    except SoftTimeLimitExceeded:
        message = f"render exceeded {rt.settings.render_time_limit_s} s"
        _end(rt, job, JobState.FAILED, fence, ErrorCode.TIMEOUT, message)
    except JobCanceled as exc:
        if lease.lost:  # the stop was another attempt taking the job, not a cancel
            log.warning("job %s: another attempt holds it; this one writes nothing", job.id)
            return
        if rt.steps is not None and time.monotonic() > deadline and not lease.should_stop():
            message = f"render exceeded {rt.settings.render_time_limit_s} s"
            _end(rt, job, JobState.FAILED, fence, ErrorCode.TIMEOUT, message)
            return
        _end(rt, job, JobState.CANCELED, fence, ErrorCode.CANCELED, exc.message)
    except (JobError, MemoryError) as raised:
        failure = _as_job_error(raised)
        if not (failure.retryable and _retry(rt, app, job, failure, fence)):
            _finish(
                rt,
                job,
                JobState.FAILED,
                fence,
                error_code=failure.code.value,
                error_message=failure.message,
            )
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job.id)
        _finish(
            rt,
            job,
            JobState.FAILED,
            fence,
            error_code=ErrorCode.INTERNAL.value,
            error_message=f"internal error ({type(exc).__name__}: {exc}); "
            "the worker log has the traceback",
        )
    else:
        _succeed(rt, job, fence, result)


def _as_job_error(raised: BaseException) -> JobError:
    """A host `MemoryError` is the job's `out_of_memory` (so the tier spill rule applies)."""
    if isinstance(raised, JobError):
        return raised
    return OutOfMemory(f"the render ran out of host memory ({type(raised).__name__})")


def _succeed(rt: Runtime, job: Job, fence: str, result: RenderResult) -> None:
    """Record success, unless a cancel landed while the output was being written: then
    the output is removed and the job recorded canceled."""
    fields = {"output": result.output, "progress": "1", "result": result.as_dict()}
    try:
        _finish(rt, job, JobState.SUCCEEDED, fence, unless_canceled=True, **fields)
    except CancelPending:
        storage, prefix = open_location(job.output.uri or rt.settings.output, rt.settings)
        files = len(result.info.get("outputs") or [result.output])  # pages: <key>.p2, ...
        for n in range(files):
            storage.delete(output_key(job, prefix, f".p{n + 1}" if n else ""))
        message = "canceled while its output was written; the output was removed"
        _end(rt, job, JobState.CANCELED, fence, ErrorCode.CANCELED, message)


def claim(rt: Runtime, job: Job, worker: str, incarnation: str | None = None) -> Attempt | None:
    """Start an attempt of the job on this worker, or say why not (finished, held by a
    live attempt, record gone, past its deadline, out of attempts)."""
    record = rt.store.get(job.id)
    if record is None:
        _dead_letter(rt, job)
        return None
    if record.state.terminal:
        log.info("job %s is already %s; acking the redelivery", job.id, record.state)
        return None
    dead = _dead_here(record, worker, incarnation)
    if record.state is JobState.RUNNING and not dead and rt.attempts.lease_alive(job.id):
        log.warning("job %s is running (attempt %s); skipping duplicate", job.id, record.attempt)
        return None
    if record.state is JobState.QUEUED and job.cancel_after and time.time() > job.cancel_after:
        message = "not started before its cancel_after deadline"
        _end(rt, job, JobState.CANCELED, None, ErrorCode.CANCELED, message)
        return None
    crashes = record.attempts - record.retries  # deliberate re-sends are not crashes
    if crashes >= rt.settings.max_attempts:
        message = f"gave up after {crashes} attempts; the worker stopped during each"
        _end(rt, job, JobState.FAILED, None, ErrorCode.INTERNAL, message)
        return None
    if record.state is JobState.QUEUED and affinity.forward(rt, job, worker):
        return None  # its model is warm on a live peer: it runs there
    started = rt.attempts.claim(
        job.id,
        dead_attempt=dead,
        worker=worker,
        progress="0",
        incarnation=incarnation,
        pid=os.getpid(),
    )
    if isinstance(started, ClaimRefused):
        log.info("job %s not started: %s", job.id, started.reason)
        return None
    return started


def _dead_here(record: JobRecord, worker: str, incarnation: str | None) -> str:
    """The id of the job's running attempt if it ran in a process of this very worker
    start that has died (a killed pool child): no need to wait for its lease to expire."""
    if record.state is not JobState.RUNNING or not record.attempt or not record.pid:
        return ""
    if (record.worker, record.incarnation) != (worker, incarnation or None):
        return ""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return record.attempt
    except PermissionError:
        return ""
    return ""


def _dead_letter(rt: Runtime, job: Job) -> None:
    """A message whose job record is gone: fail it visibly, never drop it."""
    problem = eviction_problem(rt.redis)
    reason = "the job's record was gone from Redis when its message was delivered"
    reason += f" ({problem})" if problem else " (expired, or deleted)"
    log.error("job %s: %s; dead-lettered", job.id, reason)
    rt.store.dead_letter(job.id, job.model_dump(mode="json", by_alias=True), reason)
    metrics.record_dead_letter("record_missing")


def _finish(rt: Runtime, job: Job, state: JobState, fence: str | None, **fields: Any) -> None:
    """Move the job to a final state (fenced by the attempt), waiting out a Redis outage.
    `CancelPending` propagates; other refusals are logged."""
    budget = rt.settings.retry_budget_s
    try:
        patiently(lambda: rt.store.transition(job.id, state, fence=fence, **fields), budget, job.id)
    except CancelPending:
        raise
    except TransitionRefused as refused:
        log.warning("job %s: %s", job.id, refused)
    else:
        webhooks.job_finished(rt.redis, rt.keys, job, state)


def _end(
    rt: Runtime, job: Job, state: JobState, fence: str | None, code: ErrorCode, message: str
) -> None:
    """A final state with an error code and message (`_finish`)."""
    _finish(rt, job, state, fence, error_code=code.value, error_message=message)


def _retry(rt: Runtime, app: Celery, job: Job, exc: JobError, fence: str | None = None) -> bool:
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
    elif isinstance(exc, BackToLocal):
        try:
            tier = route(job.recipe, [t for t in rt.settings.tiers() if not t.hosted])
        except SchemaError:
            return False
    elif now - first > rt.settings.retry_budget_s:
        return False
    queue = queue_name(tier, job.mode)
    try:
        rt.store.transition(
            job.id,
            JobState.RETRYING,
            fence=fence,
            error_code=exc.code.value,
            error_message=f"{exc.message}; retrying on {queue}",
            retries=record.retries + 1,
            first_retry_at=repr(first),
        )
    except TransitionRefused as refused:
        log.warning("job %s not retried: %s", job.id, refused)
        return True  # nothing more for this attempt to record
    app.send_task(
        RENDER_TASK,
        kwargs={"job": job.model_dump(mode="json", by_alias=True)},
        task_id=job.id,
        queue=queue,
        priority=job.priority,
        countdown=min(2**record.retries, 30) if exc.retry_after_s is None else exc.retry_after_s,
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


def _hooks(rt: Runtime, job: Job, lease: Lease) -> Hooks:
    """Progress and cancel checks go through the lease thread: the render never waits on
    Redis. Before each output write the lease confirms the attempt still owns the job."""

    hooks = Hooks(
        progress=lease.progress,
        canceled=lease.should_stop,
        models=RuntimeModels(rt),
        model_load_seconds=rt.load_seconds_here,
        before_publish=lease.confirm,
    )
    if rt.steps is not None:
        steps = rt.steps
        hooks.hold_card = lambda: steps.holding(job.mode)
        hooks.between_steps = steps.between_steps
        hooks.batcher = rt.batcher
    if rt.tier.hosted:
        from workers.hosted import implementations

        hooks.implementation = implementations(rt, job)
    return hooks
