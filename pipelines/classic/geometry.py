"""Geometry and mode ops: resize, crop, convert.

Resize picks its filter by direction: area averaging to shrink (no aliasing, no
ringing), Lanczos to enlarge. RGBA is resampled premultiplied, so colour hidden
under transparent pixels never bleeds into the visible edge.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from jobs.errors import InputInvalid, InputTooLarge
from jobs.ops.classic import ConvertParams, CropParams, ResizeParams
from pipelines.base import OpContext
from pipelines.classic.pixels import U8, check_mode

# A resize may enlarge; past this many pixels the result would not fit a worker's RAM
# comfortably (100 MP RGBA in float is 1.6 GB), so it is refused, not attempted.
MAX_OUTPUT_PIXELS = 100_000_000

Size = tuple[int, int]


def resize(image: Image.Image, params: ResizeParams, ctx: OpContext) -> Image.Image:
    """Scale to a width, height, box or longest side; keeps aspect unless fit=stretch."""
    check_mode(image)
    scaled, final = target_sizes(image.size, params)
    if scaled[0] * scaled[1] > MAX_OUTPUT_PIXELS:
        raise InputTooLarge(
            f"resize to {scaled[0]}x{scaled[1]} would make a "
            f"{scaled[0] * scaled[1] / 1e6:.0f} MP image; the limit is "
            f"{MAX_OUTPUT_PIXELS / 1e6:.0f} MP"
        )
    out = image.copy() if scaled == image.size else _resample(image, scaled)
    if final != scaled:  # fit=cover: fill the box, then cut the overflow evenly
        left, top = (scaled[0] - final[0]) // 2, (scaled[1] - final[1]) // 2
        out = out.crop((left, top, left + final[0], top + final[1]))
    return out


def target_sizes(size: Size, params: ResizeParams) -> tuple[Size, Size]:
    """(size to scale to, size after the centre crop that fit=cover adds)."""
    w, h = size
    if params.max_side is not None:
        scale = min(1.0, params.max_side / max(w, h))
        return _scaled(size, scale, scale), _scaled(size, scale, scale)
    if params.width is None or params.height is None:
        scale = params.width / w if params.width is not None else params.height / h  # type: ignore[operator]
        return _scaled(size, scale, scale), _scaled(size, scale, scale)
    box = (params.width, params.height)
    if params.fit == "stretch":
        return box, box
    if params.fit == "cover":
        scale = max(box[0] / w, box[1] / h)
        scaled = _scaled(size, scale, scale)
        return (max(scaled[0], box[0]), max(scaled[1], box[1])), box
    scale = min(box[0] / w, box[1] / h)
    return _scaled(size, scale, scale), _scaled(size, scale, scale)


def _scaled(size: Size, sx: float, sy: float) -> Size:
    return max(1, round(size[0] * sx)), max(1, round(size[1] * sy))


def _resample(image: Image.Image, size: Size) -> Image.Image:
    shrinking = size[0] * size[1] < image.size[0] * image.size[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    array = np.asarray(image)
    if image.mode != "RGBA":
        return Image.fromarray(cv2.resize(array, size, interpolation=interpolation))
    return Image.fromarray(_resample_premultiplied(array, size, interpolation))


def _resample_premultiplied(rgba: U8, size: Size, interpolation: int) -> U8:
    pixels = rgba.astype(np.float32)
    alpha = pixels[..., 3:] / 255.0
    pixels[..., :3] *= alpha
    out = np.clip(cv2.resize(pixels, size, interpolation=interpolation), 0.0, 255.0)
    new_alpha = out[..., 3:] / 255.0
    # Where nothing is visible any more the colour is undefined: keep it black.
    out[..., :3] = np.where(new_alpha > 1e-4, out[..., :3] / np.maximum(new_alpha, 1e-4), 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def crop(image: Image.Image, params: CropParams, ctx: OpContext) -> Image.Image:
    """Cut a box (which must lie inside the image), or centre-crop to an aspect ratio."""
    check_mode(image)
    left, top, width, height = crop_box(image.size, params)
    return image.crop((left, top, left + width, top + height))


def crop_box(size: Size, params: CropParams) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the crop, checked against the image."""
    w, h = size
    if params.aspect is not None:
        aw, ah = (int(part) for part in params.aspect.split(":"))
        width, height = (round(h * aw / ah), h) if w * ah > h * aw else (w, round(w * ah / aw))
        width, height = max(1, min(width, w)), max(1, min(height, h))
        return (w - width) // 2, (h - height) // 2, width, height
    box = (params.left, params.top, params.width, params.height)
    left, top, width, height = (int(v) for v in box)  # type: ignore[arg-type]
    if left + width > w or top + height > h:
        raise InputInvalid(
            f"crop box {left},{top},{width},{height} exceeds the {w}x{h} image "
            "(the box is left,top,width,height in pixels)"
        )
    return left, top, width, height


def convert(image: Image.Image, params: ConvertParams, ctx: OpContext) -> Image.Image:
    """Change colour mode; dropping alpha lays the image on `params.background`."""
    check_mode(image)
    if params.mode == "rgba":
        return image.convert("RGBA")
    flat = _flatten(image, params.background) if image.mode == "RGBA" else image
    return flat.convert("L" if params.mode == "gray" else "RGB")


def _flatten(rgba: Image.Image, background: str) -> Image.Image:
    base = Image.new("RGB", rgba.size, background)
    base.paste(rgba, mask=rgba.getchannel("A"))
    return base
