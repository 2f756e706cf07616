"""`/v1/jobs`: submit (JSON or multipart, optionally waiting), read, stream, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jobs.states import JobState
from producer.api.auth import Caller, Context
from producer.api.context import ApiContext
from producer.api.errors import ApiError, ErrorResponse
from producer.api.events import changes
from producer.api.inputs import vet_upload
from producer.api.models import JobView
from producer.api.openapi import JOB_REQUEST_BODY
from producer.api.replies import answer
from producer.api.requests import ExtraPart, ParsedJob, read_job, wait_of
from producer.api.submit import Extra, create_one, recipe_of
from producer.api.views import has_webhook, job_view, load
from producer.api_keys import ApiKey
from transport.notices import announce_finish

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
# OpenAPI links: what a created job's id can be used for next (clients and schemathesis).
JOB_LINKS = {
    "GetJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/id"}},
    "CancelJob": {"operationId": "cancelJob", "parameters": {"job_id": "$response.body#/id"}},
    "JobEvents": {"operationId": "jobEvents", "parameters": {"job_id": "$response.body#/id"}},
}
WaitQuery = Annotated[
    str | None,
    Query(
        max_length=16,
        description="'preview': hold the request until the (preview) job finishes; "
        "or a number of seconds",
    ),
]
PreferHeader = Annotated[str | None, Header(max_length=200, description="RFC 7240: wait=N")]
IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=200, description="same key + same body: same job"),
]


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    operation_id="createJob",
    responses={
        200: {
            "model": JobView,
            "content": {"image/webp": {}},
            "description": "finished",
            "links": JOB_LINKS,
        },
        202: {"description": "queued", "links": JOB_LINKS},
        **ERRORS,
    },
    openapi_extra={"requestBody": JOB_REQUEST_BODY},
)
async def create_job(
    request: Request,
    ctx: Context,
    key: Caller,
    wait: WaitQuery = None,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Queue one job (202), or wait for it and answer with the result (200)."""
    held = wait_of(wait, prefer, ctx.options)
    parsed = await read_job(request, held)
    job_id, replay = await run_in_threadpool(_create, ctx, key, parsed, idempotency_key)
    return await answer(request, ctx, key, job_id, replay=replay, wait=held)


def _create(
    ctx: ApiContext, key: ApiKey, parsed: ParsedJob, idempotency_key: str | None
) -> tuple[str, bool]:
    recipe = recipe_of(parsed.options)
    upload = None
    if parsed.upload is not None:
        upload = vet_upload(parsed.upload, key, ctx.settings, parsed.filename)
    extras = [vetted_extra(part, number, key, ctx) for number, part in enumerate(parsed.extras, 1)]
    return create_one(
        ctx,
        key,
        parsed.options,
        recipe,
        input_uri=parsed.input,
        upload=upload,
        body=parsed.body,
        idempotency_key=idempotency_key,
        extras=extras,
    )


def vetted_extra(part: ExtraPart, number: int, key: ApiKey, ctx: ApiContext) -> Extra:
    """Extra image `number` (from 1): its URI, or its upload vetted under the key's caps
    as the main image is (the error names which extra image it was)."""
    if part.data is None:
        assert part.uri is not None
        return part.uri
    try:
        return vet_upload(part.data, key, ctx.settings, part.filename)
    except ApiError as exc:
        raise ApiError(exc.status, f"extra input {number}: {exc.message}", code=exc.code) from None


@router.get(
    "/{job_id}",
    response_model=JobView,
    response_model_exclude_none=True,
    operation_id="getJob",
    responses=ERRORS,
)
def get_job(job_id: str, request: Request, ctx: Context, key: Caller) -> JobView:
    """A job's state, progress, timings, error and output link."""
    return job_view(ctx, load(ctx, key, job_id), ctx.base_url(request))


@router.delete(
    "/{job_id}", response_model=JobView, status_code=202, operation_id="cancelJob", responses=ERRORS
)
def cancel_job(job_id: str, request: Request, ctx: Context, key: Caller) -> JSONResponse:
    """Cancel: a queued job never starts; a running one stops at its next step."""
    raw = load(ctx, key, job_id)
    state = JobState(raw[b"state"].decode())
    if state.terminal and state is not JobState.CANCELED:
        raise ApiError(409, f"job {job_id} already {state.value}; nothing to cancel")
    if not state.terminal:
        record = ctx.store.cancel(job_id)
        if record is not None and record.state is JobState.CANCELED:
            announce_finish(
                ctx.redis, ctx.keys, job_id, JobState.CANCELED, webhook=has_webhook(raw)
            )
        raw = ctx.redis.hgetall(ctx.keys.job(job_id)) or raw
    view = job_view(ctx, raw, ctx.base_url(request))
    return JSONResponse(view.model_dump(mode="json", exclude_none=True), 202)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    operation_id="jobEvents",
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
)
async def job_events(job_id: str, request: Request, ctx: Context, key: Caller) -> Response:
    """Server-sent events: the job's view each time its state or progress changes,
    until it finishes. The event name is the state."""
    await run_in_threadpool(load, ctx, key, job_id)  # 404 for another tenant's job
    base = ctx.base_url(request)
    slots = request.app.state.streams
    if not slots.take(key.id):
        raise ApiError(
            429,
            f"this key already has {slots.per_key} event streams open; close one, or poll "
            "GET /v1/jobs/{id}",
            code="too_many_streams",
            headers={"Retry-After": "5"},
        )

    async def stream() -> AsyncIterator[str]:
        job_key = ctx.keys.job(job_id)
        poll, most = ctx.options.progress_poll_s, ctx.options.stream_max_s
        try:
            async for raw in changes(ctx.events, job_key, job_id, poll_s=poll, max_s=most):
                if raw is None:
                    yield ": keep-alive\n\n"
                    continue
                if not raw:
                    yield 'event: gone\ndata: {"message": "the job expired"}\n\n'
                    return
                view = job_view(ctx, raw, base)
                yield f"event: {view.state}\ndata: {view.model_dump_json(exclude_none=True)}\n\n"
        finally:
            slots.give(key.id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
