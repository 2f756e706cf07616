"""`remove_background`: cut the person out onto transparency, a colour or an image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from jobs.errors import InputInvalid
from jobs.ops.portrait import RemoveBackgroundParams
from pipelines.base import OpContext
from pipelines.portrait.nets import segmenter_for
from pipelines.portrait.segmentation import refine_alpha, work_image


def remove_background(
    image: Image.Image, params: RemoveBackgroundParams, ctx: OpContext
) -> Image.Image:
    """The person kept, the rest transparent (RGBA) or replaced (RGB).

    `image` is any PIL mode; an existing alpha is kept (multiplied in). The result has
    `image`'s size.

    Raises:
        InputInvalid: `background='image'` with no replacement image in the job.
        ModelUnavailable: `method='selfie'` and the selfie model is not published.
    """
    # 1. check inputs before any work
    if params.background == "image" and not ctx.extra_inputs:
        raise InputInvalid(
            "background='image' needs a replacement image: add it to the job's extra_inputs"
        )
    rgb = np.asarray(image.convert("RGB"))

    # 2. person probability, then an alpha that follows the photo's edges
    segmenter, fallback_reason = segmenter_for(params.method, ctx.models, ctx.preview)
    work = work_image(rgb)
    alpha = refine_alpha(rgb, segmenter.segment(work), params.feather_px, work)
    if image.mode in ("RGBA", "LA"):
        alpha *= np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    ctx.info["method"] = segmenter.name
    ctx.info["person_fraction"] = round(float((alpha >= 0.5).mean()), 4)
    if fallback_reason:
        ctx.info["fallback"] = fallback_reason

    # 3. put it on what the params ask for
    if params.background == "transparent":
        rgba = Image.fromarray(rgb, "RGB")
        rgba.putalpha(Image.fromarray(to_uint8(alpha), "L"))
        return rgba
    if params.background == "color":
        backdrop = np.empty_like(rgb)
        backdrop[:] = hex_rgb(params.color)
    else:
        backdrop = cover(ctx.extra_inputs[0], rgb.shape[1], rgb.shape[0])
    return Image.fromarray(composite(rgb, backdrop, alpha), "RGB")


def composite(front: np.ndarray, back: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`front` over `back` with `alpha` (0..1), in 8-bit RGB."""
    a = alpha[..., None]
    mixed = front.astype(np.float32) * a + back.astype(np.float32) * (1.0 - a)
    return to_uint8(mixed / 255.0)


def cover(image: Image.Image, width: int, height: int) -> np.ndarray:
    """`image` scaled to cover `width`x`height` and centre-cropped to it: a uint8 RGB
    array of shape (height, width, 3), 0..255."""
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    scaled = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(scaled.crop((left, top, left + width, top + height)))


def hex_rgb(color: str) -> tuple[int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Float values 0..1 (any shape) as uint8 0..255, rounded and clipped."""
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
