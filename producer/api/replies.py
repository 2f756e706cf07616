"""Answering a submission: at once (202), or after waiting for the job (200), with the
result inline as WebP when it finished in time.

`Accept: image/webp` on a waited request that succeeded gets the raw bytes; otherwise
the JSON view carries them base64-encoded in `inline`. A result larger than
`options.inline_max_bytes` is linked, not inlined.
"""

from __future__ import annotations

import base64

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from jobs.states import JobState
from producer.api.context import ApiContext
from producer.api.errors import ApiError
from producer.api.events import until_finished
from producer.api.models import InlineImage
from producer.api.outputs import read_webp
from producer.api.requests import Wait
from producer.api.views import job_view, owned
from producer.api_keys import ApiKey


async def answer(
    request: Request, ctx: ApiContext, key: ApiKey, job_id: str, *, replay: bool, wait: Wait
) -> Response:
    job_key = ctx.keys.job(job_id)
    if wait.seconds > 0:
        raw = await until_finished(ctx.events, job_key, job_id, wait.seconds)
    else:
        raw = await ctx.aredis.hgetall(job_key)
    if not raw and replay:
        raise ApiError(
            409,
            "the first request with this Idempotency-Key is still being processed; retry",
            code="idempotency_in_progress",
            headers={"Retry-After": "1"},
        )
    view = job_view(ctx, owned(raw, key, job_id), ctx.base_url(request))
    headers = {"Location": f"/v1/jobs/{job_id}"}
    if wait.prefer:
        headers["Preference-Applied"] = f"wait={wait.seconds:g}"
    finished = JobState(view.state).terminal
    if wait.seconds > 0 and view.state == JobState.SUCCEEDED.value:
        output = raw.get(b"output", b"").decode()
        webp = await run_in_threadpool(
            read_webp, output, ctx.settings, ctx.options.inline_max_bytes
        )
        if webp is not None and _wants_webp(request):
            headers["X-Darkroom-Job"] = job_id
            return Response(webp, media_type="image/webp", headers=headers)
        if webp is not None:
            view.inline = InlineImage(data=base64.b64encode(webp).decode(), bytes=len(webp))
    status = 200 if replay or (wait.seconds > 0 and finished) else 202
    return JSONResponse(view.model_dump(mode="json", exclude_none=True), status, headers)


def _wants_webp(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "image/webp" in accept and "application/json" not in accept.split(",")[0]
