"""`GET /v1/outputs/{key}`: a result on the local disk, for its own tenant only, and
`GET /healthz`. (On S3, results are read through presigned links instead.)"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from jobs.errors import InputInvalid
from producer.api.auth import Caller, Context
from producer.api.errors import ApiError
from producer.api.models import Health
from producer.api.routes_jobs import ERRORS

router = APIRouter()


@router.get(
    "/v1/outputs/{key:path}",
    tags=["outputs"],
    operation_id="getOutput",
    response_class=Response,
    responses={200: {"content": {"image/webp": {}, "image/png": {}, "image/jpeg": {}}}, **ERRORS},
)
def get_output(key: str, ctx: Context, caller: Caller) -> Response:
    """The bytes of a result (or upload) in the caller's tenant folder."""
    if not key.startswith(f"tenants/{caller.tenant}/"):
        raise ApiError(404, "no such output", code="output_not_found")
    try:
        data, media = ctx.outputs.read_local(key)
    except InputInvalid:  # missing, or a key that is not a safe storage key
        raise ApiError(404, "no such output", code="output_not_found") from None
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})


@router.get(
    "/healthz",
    response_model=Health,
    tags=["health"],
    operation_id="health",
    responses={503: {"model": Health, "description": "Redis unreachable"}},
)
async def healthz(ctx: Context) -> JSONResponse:
    """Whether this API process can reach Redis."""
    try:
        ok = bool(await ctx.aredis.ping())
    except Exception:
        ok = False
    body = Health(status="ok" if ok else "degraded", redis=ok)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
