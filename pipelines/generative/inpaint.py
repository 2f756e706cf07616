"""Inpainting: repaint a box or a masked region with SD inpainting or FLUX.1 Fill.

The region is a `box` in input pixels, or a mask image sent as the job's first extra
input (white = repaint). Every pixel outside the region is returned as it came in:
the model's output is pasted back through the (slightly feathered) mask.
"""

from __future__ import annotations

from typing import Any, ClassVar

from diffusers import FluxFillPipeline, StableDiffusionInpaintPipeline
from PIL import Image, ImageDraw, ImageFilter

from jobs.errors import InputInvalid
from jobs.ops.generative import InpaintParams
from pipelines.base import OpContext
from pipelines.generative.base import EditPipeline, FluxLatents
from pipelines.generative.sizing import check_image, fit, lane_side, lane_steps, plan_size

ASPECT_TOLERANCE = 0.02
FEATHER_FRACTION = 0.01  # of the short side: hides the seam without touching far pixels


def _box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    width, height = size
    left, top, right, bottom = box
    if right > width or bottom > height:
        raise InputInvalid(f"box {list(box)} reaches outside the {width}x{height} input")
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((left, top, right - 1, bottom - 1), fill=255)
    return mask


def _image_mask(size: tuple[int, int], mask: Image.Image) -> Image.Image:
    width, height = size
    if abs(mask.width / mask.height - width / height) > ASPECT_TOLERANCE * width / height:
        raise InputInvalid(
            f"the mask is {mask.width}x{mask.height} but the input is {width}x{height}; "
            "send a mask with the input's aspect ratio"
        )
    gray = mask.convert("L").resize(size, Image.Resampling.BILINEAR)
    return gray.point(lambda v: 255 if v > 127 else 0)


def region_mask(image: Image.Image, params: InpaintParams, ctx: OpContext) -> Image.Image:
    """The region to repaint at the input's size: 255 inside, 0 outside."""
    if params.box is not None:
        mask = _box_mask(image.size, params.box)
    elif ctx.extra_inputs:
        mask = _image_mask(image.size, ctx.extra_inputs[0])
    else:
        raise InputInvalid(
            "inpaint needs a region: give box=[left, top, right, bottom] or "
            "send a mask image as the job's extra input"
        )
    if mask.getbbox() is None:
        raise InputInvalid("the mask marks nothing to repaint (it is all black)")
    return mask


def paste_back(painted: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """`painted` inside the mask, `original` outside, with a thin feathered seam."""
    radius = max(1.0, FEATHER_FRACTION * min(mask.size))
    soft = mask.filter(ImageFilter.GaussianBlur(radius))
    return Image.composite(painted, original, soft)


class InpaintPipeline(EditPipeline):
    """The recipe both inpainting families share."""

    @classmethod
    def check_inputs(cls, image: Image.Image, params: Any, ctx: OpContext) -> None:
        check_image(image)
        region_mask(image, params, ctx)

    def _model_inputs(self, params: InpaintParams) -> dict[str, Any]:
        return {}

    def __call__(self, image: Image.Image, params: InpaintParams, ctx: OpContext) -> Image.Image:
        # 1. check inputs, and draw the region in input pixels
        self.check_inputs(image, params, ctx)
        extra = self._model_inputs(params)
        mask = region_mask(image, params, ctx)

        # 2. size: image and mask at the working size; the result at the output size
        plan = plan_size(image.size, lane_side(params, ctx), self.multiple)
        width, height = plan.work

        # 3-4. denoise and decode
        painted = self.render(
            ctx,
            plan,
            lane_steps(params, ctx),
            image=fit(image, plan.work),
            mask_image=mask.resize(plan.work, Image.Resampling.NEAREST),
            prompt=params.prompt,
            guidance_scale=params.guidance,
            strength=params.strength,
            height=height,
            width=width,
            **extra,
        )

        # 5. keep every pixel outside the region as it was
        return paste_back(painted, fit(image, plan.out), mask.resize(plan.out))


class StableDiffusionInpaint(InpaintPipeline):
    """`inpaint` with an SD inpainting model (9-channel UNet)."""

    diffusers_class: ClassVar[type[Any]] = StableDiffusionInpaintPipeline
    batchable: ClassVar[bool] = True

    @property
    def multiple(self) -> int:
        return int(self.pipe.vae_scale_factor)

    def _model_inputs(self, params: InpaintParams) -> dict[str, Any]:
        return {"negative_prompt": params.negative_prompt}


class FluxFill(FluxLatents, InpaintPipeline):
    """`inpaint` with FLUX.1 Fill."""

    diffusers_class: ClassVar[type[Any]] = FluxFillPipeline
    batchable: ClassVar[bool] = True

    def _model_inputs(self, params: InpaintParams) -> dict[str, Any]:
        if params.negative_prompt is not None:
            raise InputInvalid("FLUX.1 Fill takes no negative prompt; describe what you want")
        return {}
