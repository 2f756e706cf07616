"""Every error the API answers has one shape: `{"error": {"code", "message", "details"}}`.

darkroom's own errors map to 4xx by kind (`SchemaError` 422, `InputTooLarge` 413, ...);
a Redis outage is a 503; anything unexpected is logged with its traceback and
answered as a 500 that says so, never with the traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs.errors import (
    ConfigError,
    DarkroomError,
    InputInvalid,
    InputTooLarge,
    JobError,
    SchemaError,
    StorageUnavailable,
)
from storage.public import redact

log = logging.getLogger(__name__)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """What every 4xx and 5xx carries."""

    error: ErrorBody


class ApiError(Exception):
    """An answer other than success: status, a code a program can branch on, a message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or STATUS_CODES.get(status, "error")
        self.headers = headers
        self.details = details


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = ErrorBody(code=code or STATUS_CODES.get(status, "error"), message=message)
    body.details = details
    return JSONResponse(
        ErrorResponse(error=body).model_dump(exclude_none=True), status_code=status, headers=headers
    )


def from_darkroom(exc: DarkroomError) -> ApiError:
    """darkroom's error tree, as HTTP answers."""
    if isinstance(exc, InputTooLarge):
        return ApiError(413, exc.message, code="input_too_large")
    if isinstance(exc, StorageUnavailable):
        return ApiError(503, exc.message, code="storage_unavailable")
    if isinstance(exc, InputInvalid):
        return ApiError(422, exc.message, code="input_invalid")
    if isinstance(exc, SchemaError):
        return ApiError(422, str(exc), code="invalid_request")
    if isinstance(exc, JobError):
        return ApiError(502, exc.message, code=exc.code.value)
    if isinstance(exc, ConfigError):
        return ApiError(500, f"server misconfigured: {exc}", code="internal")
    return ApiError(500, str(exc), code="internal")


def validation_details(exc: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as `{"field", "message"}`, without echoing the input back."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", ""))})
    return out


def summary(details: list[dict[str, Any]]) -> str:
    first = details[0] if details else {"field": "body", "message": "invalid"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"


def install(app: FastAPI) -> None:
    """Route every failure through the one error shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.headers, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc)
        return error_response(422, summary(details), "invalid_request", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(DarkroomError)
    async def _darkroom(request: Request, exc: DarkroomError) -> JSONResponse:
        err = from_darkroom(exc)
        if err.status >= 500:
            log.error("request failed: %s", exc)
        ctx = getattr(request.app.state, "api", None)
        message = redact(err.message, ctx.settings) if ctx is not None else err.message
        return error_response(err.status, message, err.code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        import redis

        if isinstance(exc, redis.RedisError):
            log.error("Redis failed during %s %s: %s", request.method, request.url.path, exc)
            return error_response(503, "the job store is unavailable; try again shortly")
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the server log has the details")
