"""`POST /edit`: the compatibility route, `{"image_url", "instructions", "size"}`.

Instructions become a recipe through the phrase table in `producer.edit_phrases`;
text it does not know goes to the instruction-edit model when one is published, and
is otherwise a 422 that lists what is understood. The job then runs like any other
(the same `?wait=` / `Prefer: wait=N`, idempotency, limits and answer).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from jobs.errors import SchemaError
from producer.api.auth import Caller, Context
from producer.api.context import ApiContext
from producer.api.errors import ApiError
from producer.api.models import EditRequest, JobOptions, JobView
from producer.api.openapi import json_body
from producer.api.replies import answer
from producer.api.requests import Wait, read_model, wait_of
from producer.api.routes_jobs import (
    ERRORS,
    JOB_LINKS,
    IdempotencyHeader,
    PreferHeader,
    WaitQuery,
)
from producer.api.submit import create_one
from producer.api_keys import ApiKey
from producer.edit_phrases import UnknownInstruction, recipe_for, understood

router = APIRouter(tags=["compatibility"])


@router.post(
    "/edit",
    status_code=202,
    response_model=JobView,
    operation_id="edit",
    responses={
        200: {"model": JobView, "content": {"image/webp": {}}, "links": JOB_LINKS},
        202: {"description": "queued", "links": JOB_LINKS},
        **ERRORS,
    },
    openapi_extra={"requestBody": json_body("EditRequest")},
)
async def edit(
    request: Request,
    ctx: Context,
    key: Caller,
    wait: WaitQuery = None,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Edit an image by free-text instructions ("remove background, sharpen")."""
    body = await read_model(request, EditRequest)  # after the key: see `read_model`
    held = wait_of(wait, prefer, ctx.options)
    job_id, replay = await run_in_threadpool(_create, ctx, key, body, held, idempotency_key)
    return await answer(request, ctx, key, job_id, replay=replay, wait=held)


def _create(
    ctx: ApiContext, key: ApiKey, body: EditRequest, held: Wait, idempotency_key: str | None
) -> tuple[str, bool]:
    try:
        recipe = recipe_for(body.instructions, body.size, edit_op=ctx.edit_models.available_op())
    except UnknownInstruction as exc:
        raise ApiError(
            422,
            str(exc),
            code="instructions_not_understood",
            details=[{"unknown": exc.unknown, "understood": understood()}],
        ) from None
    except SchemaError as exc:
        raise ApiError(422, str(exc)) from None
    mode = "preview" if held.preview and "mode" not in body.model_fields_set else body.mode
    options = JobOptions(ops=None, mode=mode, webhook=body.webhook)
    return create_one(
        ctx,
        key,
        options,
        recipe,
        input_uri=body.image_url,
        upload=None,
        body=body.model_dump(mode="json") | {"mode": str(mode)},
        idempotency_key=idempotency_key,
        kind="edit",
    )
