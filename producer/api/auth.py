"""Who is calling: the API key in `Authorization: Bearer <key>` (or `X-API-Key`), and
whether its rate limit lets this request through (429 with `Retry-After` if not)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from producer.api.context import ApiContext, api_context
from producer.api.errors import ApiError
from producer.api_keys import ApiKey

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer drk_...")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: drk_...")


async def principal(
    ctx: Annotated[ApiContext, Depends(api_context)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> ApiKey:
    """The caller's key, after its rate limit; 401 or 429 otherwise."""
    presented = bearer.credentials if bearer is not None else header
    if not presented:
        raise ApiError(
            401,
            "no API key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await run_in_threadpool(_admit, ctx, presented)


def _admit(ctx: ApiContext, presented: str) -> ApiKey:
    key = ctx.ring.authenticate(presented)
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    decision = ctx.limits.hit(key.id, key.limits.rate_per_min)
    if not decision.allowed:
        raise ApiError(
            429,
            f"rate limit of {key.limits.rate_per_min} requests/min reached; "
            f"retry in {decision.retry_after_header} s",
            headers={"Retry-After": decision.retry_after_header},
        )
    return key


Caller = Annotated[ApiKey, Depends(principal)]
Context = Annotated[ApiContext, Depends(api_context)]
