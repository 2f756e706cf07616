"""Generative ops: diffusion edits in `pipelines.generative`, on GPU tiers.

Each op names the model it runs by reference (`name`, `name@version` or
`name@alias`); the model's manifest says which variant a tier runs. The VRAM
figures are what the full-size models need resident per precision, so routing
sends each op to the smallest card class that holds one of its variants.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from jobs.ops.base import Needs, OpSpec, Params, register

# Same grammar as model_store's ModelRef; repeated here because `jobs` imports nothing of ours.
MODEL_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(@[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$"
MAX_EXTRA_IMAGES = 2  # Qwen-Image-Edit-Plus reads up to three images in all


class GenerativeParams(Params):
    """What every generative edit takes: an instruction, a model, and size and step budgets.

    Ops whose models honour a negative prompt add `negative_prompt`; FLUX models are
    guidance-distilled and take none, so asking for one is a schema error there.
    """

    prompt: str = Field(min_length=1, max_length=2000, description="what to change")
    model: str = Field(pattern=MODEL_REF, description="model ref: name, name@version, name@alias")
    steps: int = Field(28, ge=1, le=100, description="denoising steps of a final render")
    guidance: float = Field(3.5, ge=0.0, le=50.0, description="how closely to follow the prompt")
    max_side: int = Field(
        1024, ge=64, le=2048, description="longest side of the result; smaller inputs keep theirs"
    )
    preview_steps: int = Field(4, ge=1, le=50, description="steps of a preview (at most steps)")
    preview_side: int = Field(512, ge=64, le=1024, description="longest side of a preview")


class KontextEditParams(GenerativeParams):
    model: str = Field("kontext@stable", pattern=MODEL_REF)
    guidance: float = Field(2.5, ge=0.0, le=50.0)


class QwenEditParams(GenerativeParams):
    """Instruction edit; the job's extra inputs are further reference images."""

    model: str = Field("qwen-edit-plus@stable", pattern=MODEL_REF)
    negative_prompt: str | None = Field(None, max_length=2000, description="what to avoid")
    steps: int = Field(40, ge=1, le=100)
    guidance: float = Field(
        4.0, ge=0.0, le=50.0, description="true classifier-free guidance; above 1 doubles the work"
    )


class InstructPix2PixParams(GenerativeParams):
    model: str = Field("ip2p@stable", pattern=MODEL_REF)
    negative_prompt: str | None = Field(None, max_length=2000, description="what to avoid")
    steps: int = Field(20, ge=1, le=100)
    guidance: float = Field(7.5, ge=0.0, le=50.0)
    image_guidance: float = Field(
        1.5, ge=0.0, le=20.0, description="how closely to keep the input image"
    )
    max_side: int = Field(768, ge=64, le=2048)


class InpaintParams(GenerativeParams):
    """Repaint a region: `box` in input pixels, or a mask image as the job's first extra input.

    `model` picks the family: an SD inpainting model or FLUX.1 Fill.
    """

    model: str = Field("sd-inpaint@stable", pattern=MODEL_REF)
    negative_prompt: str | None = Field(
        None, max_length=2000, description="what to avoid (SD models; FLUX Fill takes none)"
    )
    steps: int = Field(30, ge=1, le=100)
    guidance: float = Field(7.5, ge=0.0, le=50.0)
    strength: float = Field(1.0, gt=0.0, le=1.0, description="how much of the region to redo")
    box: tuple[int, int, int, int] | None = Field(
        None, description="[left, top, right, bottom] in input pixels; else a mask image"
    )
    max_side: int = Field(768, ge=64, le=2048)

    @model_validator(mode="after")
    def _box_is_a_box(self) -> InpaintParams:
        if self.box is not None:
            left, top, right, bottom = self.box
            if min(self.box) < 0 or right <= left or bottom <= top:
                raise ValueError(
                    "box must be [left, top, right, bottom] with left < right, top < bottom"
                )
        return self


def _gpu(**vram_gb: float) -> Needs:
    return Needs(cpu=False, vram_gb=vram_gb)


SD_INPAINT_NEEDS = _gpu(fp16=4)
FLUX_FILL_NEEDS = _gpu(bf16=34, fp8=20)


def _inpaint_needs(params: InpaintParams) -> Needs:
    """FLUX.1 Fill (12B) needs a far bigger card than SD inpainting: route by the model."""
    return FLUX_FILL_NEEDS if params.model.startswith("flux-fill") else SD_INPAINT_NEEDS


for _spec in (
    OpSpec(
        "kontext_edit",
        KontextEditParams,
        _gpu(bf16=34, fp8=20, nf4=12),
        "instruction edit with FLUX.1 Kontext (12B)",
        family="generative",
    ),
    OpSpec(
        "qwen_edit",
        QwenEditParams,
        _gpu(bf16=58, fp8=30, nf4=18),
        "instruction edit with Qwen-Image-Edit (20B); extra inputs are reference images",
        family="generative",
        extra_inputs=MAX_EXTRA_IMAGES,
        extra_role="reference images, with a Qwen-Image-Edit-Plus model",
    ),
    OpSpec(
        "ip2p_edit",
        InstructPix2PixParams,
        _gpu(fp16=4),
        "instruction edit with InstructPix2Pix (SD 1.5); fits 8 GB cards",
        family="generative",
    ),
    OpSpec(
        "inpaint",
        InpaintParams,
        SD_INPAINT_NEEDS,
        "repaint a box or masked region (SD inpainting or FLUX.1 Fill)",
        family="generative",
        needs_for=_inpaint_needs,
        extra_inputs=1,
        extra_role="a mask image, when no box is given",
        extra_inputs_for=lambda params: int(params.box is None),
    ),
):
    register(_spec)
