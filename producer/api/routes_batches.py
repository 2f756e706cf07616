"""`/v1/batches`: many inputs, one recipe; counts and a page of results.

A batch's id is `<tenant>.<random>`: the counters and membership live where
`JobStore` keeps every batch's, and the tenant prefix is what makes a batch its
tenant's (another tenant's id is a 404, as for jobs).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from producer.api.auth import Caller, Context
from producer.api.context import ApiContext
from producer.api.errors import ApiError
from producer.api.inputs import check_input, check_webhook
from producer.api.models import BatchRequest, BatchView
from producer.api.openapi import json_body
from producer.api.requests import read_model
from producer.api.routes_jobs import ERRORS
from producer.api.submit import (
    build_job,
    check_deadline,
    check_ops,
    claim_idempotency,
    fingerprint,
    queue_for,
    recipe_of,
    release_idempotency,
    stage_batch,
)
from producer.api.views import job_view
from producer.api_keys import ApiKey
from producer.batch import BatchProgress

router = APIRouter(prefix="/v1/batches", tags=["batches"])
PAGE_MAX = 500


BATCH_LINKS = {
    "GetBatch": {"operationId": "getBatch", "parameters": {"batch_id": "$response.body#/id"}}
}


@router.post(
    "",
    status_code=202,
    response_model=BatchView,
    operation_id="createBatch",
    responses={202: {"description": "queued", "links": BATCH_LINKS}, **ERRORS},
    openapi_extra={"requestBody": json_body("BatchRequest")},
)
async def create_batch(
    request: Request,
    ctx: Context,
    key: Caller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> JSONResponse:
    """Queue one job per input, all with the same recipe. A batch larger than the key's
    concurrency is accepted: its jobs start as the tenant's running jobs finish."""
    body = await read_model(request, BatchRequest)  # after the key: see `read_model`
    batch_id, replay = await run_in_threadpool(_create, ctx, key, body, idempotency_key)
    view = await run_in_threadpool(_view, ctx, request, key, batch_id, 0, 0)
    return JSONResponse(view.model_dump(mode="json", exclude_none=True), 200 if replay else 202)


def _create(
    ctx: ApiContext, key: ApiKey, body: BatchRequest, idempotency_key: str | None
) -> tuple[str, bool]:
    # 1. refuse what can be refused before anything is written
    recipe = recipe_of(body)
    check_ops(recipe, key)
    check_deadline(body.cancel_after, ctx)
    check_webhook(body.webhook, ctx.settings)
    queue = queue_for(recipe, body, ctx)
    uris = [check_input(uri, key, ctx.outputs, ctx.settings) for uri in body.uris()]
    # 2. the idempotency key
    batch_id = f"{key.tenant}.{secrets.token_hex(8)}"
    print_ = fingerprint("batch", body.model_dump(mode="json"))
    claim = claim_idempotency(ctx, key, idempotency_key, print_, batch_id)
    if claim is not None and claim.existing is not None:
        return claim.existing, True
    # 3. the jobs
    try:
        jobs = [build_job(ctx, key, body, recipe, uri, batch=batch_id) for uri in uris]
        stage_batch(ctx, key, jobs, queue)
    except BaseException:
        release_idempotency(ctx, claim, batch_id)
        raise
    return batch_id, False


@router.get(
    "/{batch_id}",
    response_model=BatchView,
    response_model_exclude_none=True,
    operation_id="getBatch",
    responses=ERRORS,
)
def get_batch(
    batch_id: str,
    request: Request,
    ctx: Context,
    key: Caller,
    cursor: Annotated[str | None, Query(max_length=20, description="from `next_cursor`")] = None,
    limit: Annotated[int, Query(ge=0, le=PAGE_MAX)] = 100,
) -> BatchView:
    """The batch's counts, and a page of its jobs (ordered by input, then job id)."""
    start = _cursor(cursor)
    return _view(ctx, request, key, batch_id, start, limit)


def _cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if not cursor.isdigit():
        raise ApiError(422, "cursor must be a `next_cursor` this API returned")
    return int(cursor)


def _view(
    ctx: ApiContext, request: Request, key: ApiKey, batch_id: str, cursor: int, limit: int
) -> BatchView:
    if batch_id.partition(".")[0] != key.tenant:
        raise ApiError(404, f"no batch {batch_id}", code="batch_not_found")
    counts = ctx.store.batch_counts(batch_id)
    progress = BatchProgress.from_counts(counts)
    if progress.total == 0:
        raise ApiError(404, f"no batch {batch_id} (or it expired)", code="batch_not_found")
    members = sorted(ctx.store.batch_members(batch_id).items(), key=lambda kv: (kv[1], kv[0]))
    page = members[cursor : cursor + limit]
    pipe = ctx.redis.pipeline(transaction=False)
    for job_id, _source in page:
        pipe.hgetall(ctx.keys.job(job_id))
    base = ctx.base_url(request)
    views = [job_view(ctx, raw, base) for raw in pipe.execute() if raw]
    more = cursor + limit < len(members) and limit > 0
    return BatchView(
        id=batch_id,
        done=progress.done,
        total=progress.total,
        counts={k: v for k, v in counts.items() if k != "total"},
        jobs=views,
        next_cursor=str(cursor + limit) if more else None,
    )
