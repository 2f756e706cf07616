"""Instruction edits with InstructPix2Pix (SD 1.5 class): small enough for 8 GB cards."""

from __future__ import annotations

from typing import Any, ClassVar

from diffusers import StableDiffusionInstructPix2PixPipeline
from PIL import Image

from jobs.ops.generative import InstructPix2PixParams
from pipelines.base import OpContext
from pipelines.generative.base import EditPipeline
from pipelines.generative.sizing import fit, lane_side, lane_steps, plan_size


class InstructPix2PixEdit(EditPipeline):
    """`ip2p_edit`: `guidance` pulls toward the instruction, `image_guidance` toward the input."""

    diffusers_class: ClassVar[type[Any]] = StableDiffusionInstructPix2PixPipeline
    batchable: ClassVar[bool] = True

    @property
    def multiple(self) -> int:
        return int(self.pipe.vae_scale_factor)  # a UNet has no 2x2 patches

    def __call__(
        self, image: Image.Image, params: InstructPix2PixParams, ctx: OpContext
    ) -> Image.Image:
        # 1. check inputs
        self.check_inputs(image, params, ctx)

        # 2. size: the output takes the conditioning image's size, so size the input
        plan = plan_size(image.size, lane_side(params, ctx), self.multiple)
        source = fit(image, plan.work)

        # 3-4. denoise and decode
        return self.render(
            ctx,
            plan,
            lane_steps(params, ctx),
            image=source,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            guidance_scale=params.guidance,
            image_guidance_scale=params.image_guidance,
        )
