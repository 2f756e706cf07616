"""Hosted edits: Gemini 2.5 Flash Image ("Nano Banana"), run by Google, on the `hosted` tier.

`gemini_edit` names the hosted backend outright. The GPU instruction edits in
`SPILLABLE` may also spill to it when their tier's queue is over its wait target
(`producer.overflow`); the job keeps its recipe, and the hosted worker sends the
step's prompt and images instead of running the local model.
"""

from __future__ import annotations

from pydantic import Field

from jobs.ops.base import MAX_EXTRA_INPUTS, Needs, OpSpec, Params, register

HOSTED = "hosted"  # the pseudo-precision only the hosted tier offers
HOSTED_NEEDS = Needs(cpu=False, vram_gb={HOSTED: 0.0})
GEMINI_MODEL = r"^gemini-[a-z0-9.-]{1,60}$"

# Instruction edits whose meaning a hosted instruction edit keeps: one prompt, the input
# image and reference images. Masked inpainting and identity gates do not spill.
SPILLABLE: frozenset[str] = frozenset({"kontext_edit", "qwen_edit", "ip2p_edit"})


class GeminiEditParams(Params):
    """An instruction edit sent to Gemini 2.5 Flash Image; extra inputs go along as
    reference images. Steps, guidance and seeds are the provider's business."""

    prompt: str = Field(min_length=1, max_length=2000, description="what to change")
    model: str = Field(
        "gemini-2.5-flash-image",
        pattern=GEMINI_MODEL,
        description="the provider's model id (not a darkroom model-store ref)",
    )


register(
    OpSpec(
        "gemini_edit",
        GeminiEditParams,
        HOSTED_NEEDS,
        "instruction edit with Gemini 2.5 Flash Image (Nano Banana), hosted by Google: "
        "the image and the instruction leave the machine",
        family=HOSTED,
        extra_inputs=MAX_EXTRA_INPUTS,
        extra_role="reference images sent along with the input",
    )
)
