"""The hosted tier's ops: `gemini_edit`, and GPU edits spilled to it, sent to Gemini 2.5
Flash Image under the daily spend caps.

Per call: reserve the estimated price against the tenant's and the deployment's caps
(`transport.spend`), call the provider (`pipelines.hosted`), then settle the reservation
to what the answer's token counts cost (nothing when the provider refused before
working; the whole estimate when it timed out, as it may have billed). A spilled job
that the caps or the provider's quota turn away goes back to its GPU queue
(`BackToLocal`) instead of failing: overflow is best effort, the job is not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from jobs.errors import (
    BackToLocal,
    JobError,
    JobTimeout,
    ModelUnavailable,
    QuotaExceeded,
)
from jobs.ops import get_op
from jobs.ops.hosted import SPILLABLE, GeminiEditParams
from jobs.schema import Job
from jobs.settings import Settings
from pipelines.base import Op, OpContext
from pipelines.hosted import GeminiImageEditor, HostedEdit
from pipelines.registry import implementation as local_implementation
from transport.spend import Caps, SpendLedger
from workers.runtime import Runtime

BACKEND = "gemini-api"
DEFAULT_MODEL = GeminiEditParams.model_fields["model"].default
SEED_RANGE = 2**31  # the API's seed is an int32


@dataclass
class HostedBackend:
    """One worker process's provider client and spend ledger."""

    editor: GeminiImageEditor
    ledger: SpendLedger
    settings: Settings

    @classmethod
    def from_runtime(cls, rt: Runtime) -> HostedBackend:
        """Raises `ModelUnavailable` when this deployment has no hosted credentials."""
        settings = rt.settings
        if settings.hosted_api_key is None or not settings.hosted_enabled:
            raise ModelUnavailable(
                "the hosted tier is off on this deployment: set DARKROOM_HOSTED_API_KEY"
            )
        editor = GeminiImageEditor.connect(
            settings.hosted_api_key.get_secret_value(),
            settings.hosted_base_url,
            settings.hosted_timeout_s,
        )
        caps = Caps(settings.hosted_tenant_daily_cap_usd, settings.hosted_daily_cap_usd)
        return cls(editor, SpendLedger(rt.redis, rt.keys, caps), settings)

    def cost_usd(self, edit: HostedEdit) -> float:
        """What the answer costs at the configured per-token prices."""
        s = self.settings
        return (
            edit.input_tokens * s.hosted_usd_per_m_input_tokens
            + edit.output_tokens * s.hosted_usd_per_m_output_tokens
        ) / 1e6


_backend: tuple[int, HostedBackend] | None = None


def backend(rt: Runtime) -> HostedBackend:
    """This process's backend, built on its first hosted job (and again after a fork)."""
    global _backend
    if _backend is None or _backend[0] != os.getpid():
        _backend = (os.getpid(), HostedBackend.from_runtime(rt))
    return _backend[1]


def implementations(rt: Runtime, job: Job) -> Callable[[str], Op]:
    """What a hosted worker runs for each op of `job`: hosted edits through the provider,
    CPU ops locally, anything else refused with a message."""

    def resolve(op_name: str) -> Op:
        if op_name == "gemini_edit" or op_name in SPILLABLE:
            return _hosted_op(rt, job, op_name)
        if get_op(op_name).needs.cpu:
            return local_implementation(op_name)  # type: ignore[no-any-return]
        raise ModelUnavailable(f"op {op_name} needs a GPU tier; the hosted tier cannot run it")

    return resolve


def _hosted_op(rt: Runtime, job: Job, op_name: str) -> Op:
    def run(image: Image.Image, params: Any, ctx: OpContext) -> Image.Image:
        return edit(backend(rt), job, op_name, image, params, ctx)

    return run


def edit(
    hosted: HostedBackend, job: Job, op_name: str, image: Image.Image, params: Any, ctx: OpContext
) -> Image.Image:
    """One hosted edit under the caps; records backend, tokens and cost in `ctx.info`.

    Raises:
        BackToLocal: a spilled job the caps or the provider's quota turn away.
        QuotaExceeded: a `gemini_edit` job over a cap (not retried) or the provider's
            quota (retried after the provider's delay).
        JobError: the provider's other answers (`pipelines.hosted.answers`).
    """
    spilled = op_name != "gemini_edit"
    model = DEFAULT_MODEL if spilled else params.model
    reserved = hosted.settings.hosted_usd_per_image
    day = time.time()  # settle on the reservation's day, even if the call ends after midnight
    # 1. reserve the estimate against today's caps
    refusal = hosted.ledger.reserve(job.tenant, reserved, now=day)
    if refusal is not None:
        message = refusal.describe(job.tenant or "(none)")
        raise _back_to_local(message) if spilled else QuotaExceeded(message)
    # 2. the call; a failure gives the reservation back unless the provider may have billed
    seed = None if ctx.seed is None else ctx.seed % SEED_RANGE
    try:
        made = hosted.editor.edit(image, params.prompt, ctx.extra_inputs, model=model, seed=seed)
    except JobError as exc:
        if not isinstance(exc, JobTimeout):
            hosted.ledger.settle(job.tenant, reserved, 0.0, now=day)
        if spilled and isinstance(exc, QuotaExceeded):
            raise _back_to_local(exc.message) from None
        raise
    # 3. settle to the real cost and say who rendered it
    cost = hosted.cost_usd(made)
    hosted.ledger.settle(job.tenant, reserved, cost, now=day)
    ctx.info.update(
        backend=f"{BACKEND}:{made.model_version}",
        input_tokens=made.input_tokens,
        output_tokens=made.output_tokens,
        cost_usd=round(cost, 6),
    )
    if spilled:
        ctx.info["spilled_from"] = op_name
    return _preview_sized(made.image, params, ctx)


def _back_to_local(message: str) -> BackToLocal:
    error = BackToLocal(f"{message}; the spilled job goes back to its GPU queue")
    error.retry_after_s = 0.0
    return error


def _preview_sized(image: Image.Image, params: Any, ctx: OpContext) -> Image.Image:
    """A spilled preview keeps its op's preview size (the provider has no preview mode)."""
    side = getattr(params, "preview_side", None)
    if ctx.preview and side and max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


__all__ = ["BACKEND", "HostedBackend", "backend", "edit", "implementations"]
