"""The body a webhook receiver gets: the event and the job as `GET /v1/jobs/{id}` shows it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from storage.public import public_link, redact

if TYPE_CHECKING:
    from jobs.settings import Settings


def payload(delivery: dict[str, Any], job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What the receiver gets: the event and the job as `GET /v1/jobs/{id}` shows it. A
    tenant's job (from the API) shows only the tenant's own URI forms; an operator's job
    (from `darkroom submit`) its output URI as stored."""
    tenant = bool(job.get("tenant"))
    message = job.get("error_message", "")
    error = (
        {"code": job["error_code"], "message": redact(message, settings) if tenant else message}
        if job.get("error_code")
        else None
    )
    output = job.get("output") or None
    if output and tenant:
        output = public_link(output, settings)
    stamps = ("queued_at", "running_at", "succeeded_at", "failed_at", "canceled_at")
    return {
        "id": delivery["id"],
        "type": delivery["event"],
        "created_at": time.time(),
        "data": {
            "id": job.get("id", delivery["job"]),
            "state": job.get("state"),
            "batch": job.get("batch") or None,
            "output": output,
            "error": error,
            "timestamps": {s: float(job[s]) for s in stamps if job.get(s)},
        },
    }
