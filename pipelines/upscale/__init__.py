"""AI super-resolution: idealo ISR's RDN / RRDN (trained on DIV2K, from UpscalerJS).

`OPS["upscale"]` checks the job (output pixel limit) before any model loads, asks the
worker's resident cache for `esrgan-<model>-x<scale>`, and runs it in overlapping tiles.

Preview lane: the slim RDN of the same scale over the whole image, whose input is first
reduced to at most PREVIEW_INPUT_PIXELS. Measured (README, `python -m bench.variants`):
the thick RRDN costs ~80 s per input MP on two cores, so 200 ms buys a ~50x50 px centre
crop — too small to judge — while the slim RDN (upsampler folded) covers a 256x256 input
in that time, showing the whole picture at the requested scale.

Alpha is resized on its own with Lanczos and put back: the networks were trained on
photographs, and a mask run through them would triple the cost for no sharper edge.
"""

from __future__ import annotations

from PIL import Image

from jobs.errors import InputInvalid, InputTooLarge, ModelUnavailable
from jobs.ops.base import Params
from jobs.ops.upscale import MAX_OUTPUT_PIXELS, UpscaleParams, model_name
from pipelines.base import OpContext, OpTable
from pipelines.upscale.pipeline import PIPELINE_CLASS, UpscalePipeline

PREVIEW_INPUT_PIXELS = 256 * 256
PREVIEW_MODEL = "slim"


def check_size(image: Image.Image, scale: int) -> None:
    """Raises: InputTooLarge when the result would exceed MAX_OUTPUT_PIXELS."""
    out_w, out_h = image.width * scale, image.height * scale
    if out_w * out_h > MAX_OUTPUT_PIXELS:
        raise InputTooLarge(
            f"upscaling {image.width}x{image.height} x{scale} gives {out_w}x{out_h} "
            f"({out_w * out_h / 1e6:.0f} MP), over the {MAX_OUTPUT_PIXELS / 1e6:.0f} MP limit; "
            "crop the image or pick a smaller scale"
        )


def preview_input(image: Image.Image) -> Image.Image:
    """`image`, reduced (Lanczos, aspect kept) to at most PREVIEW_INPUT_PIXELS."""
    pixels = image.width * image.height
    if pixels <= PREVIEW_INPUT_PIXELS:
        return image
    ratio = (PREVIEW_INPUT_PIXELS / pixels) ** 0.5
    size = (max(1, int(image.width * ratio)), max(1, int(image.height * ratio)))
    return image.resize(size, Image.Resampling.LANCZOS)


def upscale(image: Image.Image, params: Params, ctx: OpContext) -> Image.Image:
    # 1. check the job before any model loads
    if not isinstance(params, UpscaleParams):
        raise TypeError(f"upscale got {type(params).__name__}, not UpscaleParams")
    check_size(image, params.scale)
    if ctx.models is None:
        raise ModelUnavailable("upscale needs a worker with a model cache")
    # 2. the model: the chosen one on the final lane, the slim one on a reduced input for a preview
    model = PREVIEW_MODEL if ctx.preview else params.model
    if ctx.preview:
        image = preview_input(image)
    pipeline = ctx.models.get(model_name(model, params.scale), ctx.lane)
    if not isinstance(pipeline, UpscalePipeline):
        raise InputInvalid(f"model {model_name(model, params.scale)} is not a {PIPELINE_CLASS}")
    # 3. tiles
    out, info = pipeline(
        image,
        tile=params.tile,
        overlap=params.overlap,
        progress=ctx.progress,
        should_stop=ctx.should_stop,
        between_steps=ctx.between_steps,
    )
    ctx.info.update(info)
    return out


OPS: OpTable = {"upscale": upscale}

__all__ = ["OPS", "PREVIEW_INPUT_PIXELS", "UpscalePipeline", "check_size", "upscale"]
