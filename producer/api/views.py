"""A job's Redis hash as the API shows it, for its own tenant only.

Reading a job also enforces its deadline: a job still queued past its `cancel_after`
is canceled here and then (the worker would cancel it at claim time, but only once a
worker reaches it), so `GET` never shows a job as queued when it can no longer start.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from jobs.errors import DarkroomError
from jobs.states import ErrorCode, JobState
from producer.api.context import ApiContext
from producer.api.errors import ApiError
from producer.api.models import ErrorInfo, JobView, WebhookView
from producer.api_keys import ApiKey
from producer.results import timings
from storage.public import redact
from transport.notices import announce_finish
from transport.store import JobRecord, TransitionRefused

Raw = dict[Any, Any]  # a job's hash as redis-py returns it (bytes -> bytes)
DEADLINE_MESSAGE = "not started before its cancel_after deadline"
STAMPS = ("created_at", "queued_at", "running_at", "retrying_at", "succeeded_at", "failed_at")


def owned(raw: Raw, key: ApiKey, job_id: str) -> Raw:
    """`raw` if it is the caller's tenant's job; a 404 otherwise (never a 403: another
    tenant's job ids are not confirmed to exist)."""
    # No state yet: the owner fields are written just before the job is queued.
    if b"state" not in raw or raw.get(b"tenant", b"").decode() != key.tenant:
        raise ApiError(404, f"no job {job_id}", code="job_not_found")
    return raw


def load(ctx: ApiContext, key: ApiKey, job_id: str) -> Raw:
    raw: Raw = ctx.redis.hgetall(ctx.keys.job(job_id)) if _plausible(job_id) else {}
    return enforce_deadline(ctx, owned(raw, key, job_id), job_id)


def _plausible(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and all(c.isalnum() or c in "_-" for c in job_id)


def enforce_deadline(ctx: ApiContext, raw: Raw, job_id: str) -> Raw:
    deadline = raw.get(b"cancel_after")
    if raw.get(b"state") != b"queued" or deadline is None or float(deadline) > time.time():
        return raw
    try:
        ctx.store.transition(
            job_id,
            JobState.CANCELED,
            only_from=(JobState.QUEUED,),
            error_code=ErrorCode.CANCELED.value,
            error_message=DEADLINE_MESSAGE,
        )
    except TransitionRefused:
        pass  # a worker took it (or canceled it) meanwhile
    else:
        announce_finish(ctx.redis, ctx.keys, job_id, JobState.CANCELED, webhook=has_webhook(raw))
    fresh: Raw = ctx.redis.hgetall(ctx.keys.job(job_id))
    return fresh or raw


def has_webhook(raw: Raw) -> bool:
    try:
        return bool(json.loads(raw.get(b"job", b"{}")).get("webhook"))
    except ValueError:
        return False


def job_view(ctx: ApiContext, raw: Raw, base_url: str) -> JobView:
    """The public view of a job's hash (no tenant, key id, paths or secrets)."""
    record = JobRecord.from_hash(raw)
    job = _job_json(raw)
    view = JobView(
        id=record.id,
        state=record.state.value,
        mode=job.get("mode"),
        batch=record.batch,
        progress=record.progress,
        attempts=record.attempts,
        cancel_requested=record.cancel_requested and not record.state.terminal,
        cancel_after=job.get("cancel_after"),
        timings=timings(record),
        timestamps=_stamps(record),
        webhook=_webhook(raw),
    )
    if record.error_code is not None:
        message = redact(record.error_message or "", ctx.settings)
        view.error = ErrorInfo(code=record.error_code.value, message=message)
    if record.state is JobState.SUCCEEDED and record.output:
        view.backend = str((record.result or {}).get("backend", "local"))
        try:
            view.output = ctx.outputs.link(record.output, base_url)
        except DarkroomError:
            view.output = None  # written outside this API's output location
    info = dict((record.result or {}).get("info") or {})
    files = info.pop("outputs", None) or []
    view.info = json.loads(redact(json.dumps(info), ctx.settings))
    for uri in files if record.state is JobState.SUCCEEDED else []:
        with contextlib.suppress(DarkroomError):
            view.pages.append(ctx.outputs.link(str(uri), base_url))
    return view


def _job_json(raw: Raw) -> dict[str, Any]:
    try:
        data = json.loads(raw.get(b"job", b"{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _stamps(record: JobRecord) -> dict[str, float]:
    stamps = {name: getattr(record, name) for name in STAMPS}
    stamps["canceled_at"] = record.canceled_at
    return {name: value for name, value in stamps.items() if value is not None}


def _webhook(raw: Raw) -> WebhookView | None:
    text = raw.get(b"webhook")
    if not text:
        url = _job_json(raw).get("webhook")
        return WebhookView(url=url, state="pending") if url else None
    try:
        return WebhookView.model_validate(json.loads(text))
    except ValueError:
        return None
