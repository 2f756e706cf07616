"""The provider's answers, mapped to darkroom's job errors.

Codes and reasons follow the Gemini API's documented errors (ai.google.dev, "API
troubleshooting"): 429 RESOURCE_EXHAUSTED carries a `google.rpc.RetryInfo` with the
delay to wait; 500/503 are transient; 504 DEADLINE_EXCEEDED is a timeout; 400 is the
request's fault (a rejected API key says `API_KEY_INVALID`); a safety block is a 200
whose prompt feedback or candidate names the reason.
"""

from __future__ import annotations

from typing import Any

from jobs.errors import (
    InputInvalid,
    JobError,
    JobTimeout,
    ModelUnavailable,
    QuotaExceeded,
    RefusedByProvider,
)

PROVIDER = "Gemini API"
# Finish reasons that mean the provider declined, rather than failed.
REFUSALS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    }
)


def retrying(error: JobError, after_s: float | None = None) -> JobError:
    """`error`, marked worth another attempt (after `after_s` if the provider said)."""
    error.retryable = True
    error.retry_after_s = after_s
    return error


def retry_delay_s(body: Any) -> float | None:
    """The `RetryInfo.retryDelay` of an error body ("21s", "0.5s"), in seconds."""
    details = body.get("error", {}).get("details", []) if isinstance(body, dict) else []
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            try:
                return float(str(detail.get("retryDelay", "")).rstrip("s"))
            except ValueError:
                return None
    return None


def _reasons(body: Any) -> set[str]:
    details = body.get("error", {}).get("details", []) if isinstance(body, dict) else []
    return {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")}


def from_status(code: int, status: str | None, message: str | None, body: Any) -> JobError:
    """The job error for an HTTP error answer of the provider."""
    said = f"{PROVIDER} {code} {status or ''}: {message or 'no message'}".strip()
    if code == 429:
        return retrying(QuotaExceeded(f"{said}; the provider's quota"), retry_delay_s(body))
    if code == 504:
        return retrying(JobTimeout(f"{said}; the provider gave up on the edit"))
    if code >= 500:
        return retrying(ModelUnavailable(f"{said}; the provider is unavailable"))
    if "API_KEY_INVALID" in _reasons(body) or code in (401, 403):
        return ModelUnavailable(f"{said}; the deployment's hosted credentials were refused")
    if code == 404:
        return ModelUnavailable(f"{said}; check the op's `model`")
    return InputInvalid(f"{said}; the provider refused the request")


def refusal(block_reason: str | None, finish_reason: str | None, text: str) -> JobError:
    """The job error for an answer that carries no image."""
    if block_reason:
        return RefusedByProvider(f"{PROVIDER} blocked the request ({block_reason})")
    if finish_reason in REFUSALS:
        return RefusedByProvider(f"{PROVIDER} declined to make the image ({finish_reason})")
    said = f": {text[:300]}" if text else ""
    return RefusedByProvider(
        f"{PROVIDER} answered without an image (finish reason {finish_reason}){said}"
    )
