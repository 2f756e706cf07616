"""Instruction edits with FLUX.1 Kontext."""

from __future__ import annotations

from typing import Any, ClassVar

from diffusers import FluxKontextPipeline
from PIL import Image

from jobs.ops.generative import KontextEditParams
from pipelines.base import OpContext
from pipelines.generative.base import EditPipeline, FluxLatents
from pipelines.generative.sizing import fit, lane_side, lane_steps, plan_size


class KontextEdit(FluxLatents, EditPipeline):
    """`kontext_edit`: change an image as the prompt says, keeping what it does not mention."""

    diffusers_class: ClassVar[type[Any]] = FluxKontextPipeline
    batchable: ClassVar[bool] = True

    def __call__(
        self, image: Image.Image, params: KontextEditParams, ctx: OpContext
    ) -> Image.Image:
        # 1. check inputs
        self.check_inputs(image, params, ctx)

        # 2. size: the input's aspect at the lane's size, rounded to the latent grid
        plan = plan_size(image.size, lane_side(params, ctx), self.multiple)
        source = fit(image, plan.work)
        width, height = plan.work

        # 3-4. denoise and decode. Kontext would otherwise rescale to ~1 MP and snap the
        # input to its preferred resolutions: the working size is ours to choose.
        return self.render(
            ctx,
            plan,
            lane_steps(params, ctx),
            image=source,
            prompt=params.prompt,
            guidance_scale=params.guidance,
            height=height,
            width=width,
            max_area=width * height,
            _auto_resize=False,
        )
