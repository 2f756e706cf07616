"""Instruction edits with Qwen-Image-Edit, and multi-image edits with its Plus pipeline."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, ClassVar

import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit_module
import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as plus_module
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline
from PIL import Image

from jobs.errors import InputInvalid
from jobs.ops.generative import MAX_EXTRA_IMAGES, QwenEditParams
from pipelines.base import OpContext
from pipelines.generative.base import EditPipeline
from pipelines.generative.compat import fix_qwen2vl_processor
from pipelines.generative.sizing import check_image, fit, lane_side, lane_steps, plan_size

fix_qwen2vl_processor()

# Both edit pipelines size every input image to this area (~1 MP) through a
# module-level `calculate_dimensions`; `_vae_area` swaps in the job's working area.
QWEN_VAE_AREA = 1024 * 1024
_area_lock = threading.Lock()


@contextmanager
def _vae_area(module: ModuleType, area: int) -> Iterator[None]:
    """Make `module`'s pipeline encode inputs at `area` pixels instead of ~1 MP.

    diffusers offers no parameter for it, and at 1 MP even a tiny model spends seconds
    in its VAE. The vision-language prompt images keep their own (smaller) size.
    """
    original: Callable[..., Any] = getattr(module, "calculate_dimensions")  # noqa: B009

    def sized(target_area: int, ratio: float) -> Any:
        dims = original(area if target_area == QWEN_VAE_AREA else target_area, ratio)
        # The pipeline rounds to 32 px; a thin working size must not round to zero.
        return tuple(max(32, v) if isinstance(v, int) else v for v in dims)

    with _area_lock:
        setattr(module, "calculate_dimensions", sized)  # noqa: B010
        try:
            yield
        finally:
            setattr(module, "calculate_dimensions", original)  # noqa: B010


class QwenEdit(EditPipeline):
    """`qwen_edit` with a single-image Qwen-Image-Edit model."""

    diffusers_class: ClassVar[type[Any]] = QwenImageEditPipeline
    takes_tiny_decoder: ClassVar[bool] = False
    # Not `batchable`: the Plus pipeline reads an image list as one edit's references, and
    # `_vae_area` holds a lock around each render, so two Qwen previews never meet anyway.
    max_extra_images: ClassVar[int] = 0
    module: ClassVar[ModuleType] = edit_module

    @classmethod
    def check_inputs(cls, image: Image.Image, params: Any, ctx: OpContext) -> None:
        check_image(image)
        extra = len(ctx.extra_inputs)
        if extra > cls.max_extra_images:
            raise InputInvalid(
                f"this model edits {1 + cls.max_extra_images} image(s) at a time; the job has "
                f"{1 + extra}: use a Qwen-Image-Edit-Plus model for multi-image edits"
            )
        for index, reference in enumerate(ctx.extra_inputs):
            check_image(reference, f"extra input {index + 1}")

    def _images(self, image: Image.Image, ctx: OpContext) -> Any:
        return image

    def __call__(self, image: Image.Image, params: QwenEditParams, ctx: OpContext) -> Image.Image:
        # 1. check inputs (the job's extra inputs are further reference images)
        self.check_inputs(image, params, ctx)

        # 2. size: the first image's aspect at the lane's size, on the latent grid
        plan = plan_size(image.size, lane_side(params, ctx), self.multiple)
        source = fit(image, plan.work)
        width, height = plan.work

        # 3-4. denoise and decode; true CFG (guidance > 1) needs a negative prompt
        cfg = params.guidance > 1.0
        with _vae_area(self.module, plan.work_area):
            return self.render(
                ctx,
                plan,
                lane_steps(params, ctx),
                image=self._images(source, ctx),
                prompt=params.prompt,
                negative_prompt=(params.negative_prompt or " ") if cfg else None,
                true_cfg_scale=params.guidance,
                height=height,
                width=width,
            )


class QwenEditPlus(QwenEdit):
    """`qwen_edit` with Qwen-Image-Edit-Plus: the input plus up to two reference images."""

    diffusers_class: ClassVar[type[Any]] = QwenImageEditPlusPipeline
    max_extra_images: ClassVar[int] = MAX_EXTRA_IMAGES
    module: ClassVar[ModuleType] = plus_module

    def _images(self, image: Image.Image, ctx: OpContext) -> Any:
        # The job's input is "Picture 1" of the prompt; the output size is passed explicitly.
        return [image, *(reference.convert("RGB") for reference in ctx.extra_inputs)]
