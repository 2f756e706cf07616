"""Geometry and mode ops: resize, crop, convert.

Resize picks its filter by direction: area averaging to shrink (no aliasing, no
ringing), Lanczos to enlarge. RGBA is resampled premultiplied, so colour hidden
under transparent pixels never bleeds into the visible edge. 16-bit images
(`DeepImage`) stay 16-bit through all three ops.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageColor

from jobs.errors import InputInvalid, InputTooLarge
from jobs.ops.classic import ConvertParams, CropParams, ResizeParams
from pipelines.base import OpContext
from pipelines.classic.pixels import AnyImage, Pixels, check_mode
from storage.deep import MAX16, DeepImage

# A resize may enlarge; past this many pixels the result would not fit a worker's RAM
# comfortably (100 MP RGBA in float is 1.6 GB), so it is refused, not attempted.
MAX_OUTPUT_PIXELS = 100_000_000

Size = tuple[int, int]


def resize(image: AnyImage, params: ResizeParams, ctx: OpContext) -> AnyImage:
    """Scale to a width, height, box or longest side; keeps aspect unless fit=stretch."""
    check_mode(image)
    scaled, final = target_sizes(image.size, params)
    if scaled[0] * scaled[1] > MAX_OUTPUT_PIXELS:
        raise InputTooLarge(
            f"resize to {scaled[0]}x{scaled[1]} would make a "
            f"{scaled[0] * scaled[1] / 1e6:.0f} MP image; the limit is "
            f"{MAX_OUTPUT_PIXELS / 1e6:.0f} MP"
        )
    out = _copy(image) if scaled == image.size else _resample(image, scaled)
    if final != scaled:  # fit=cover: fill the box, then cut the overflow evenly
        left, top = (scaled[0] - final[0]) // 2, (scaled[1] - final[1]) // 2
        out = _crop(out, (left, top, left + final[0], top + final[1]))
    return out


def _copy(image: AnyImage) -> AnyImage:
    return DeepImage(image.pixels.copy()) if isinstance(image, DeepImage) else image.copy()


def _crop(image: AnyImage, box: tuple[int, int, int, int]) -> AnyImage:
    if not isinstance(image, DeepImage):
        return image.crop(box)
    left, top, right, bottom = box
    return DeepImage(np.ascontiguousarray(image.pixels[top:bottom, left:right]))


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


def _resample(image: AnyImage, size: Size) -> AnyImage:
    shrinking = size[0] * size[1] < image.size[0] * image.size[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    array: Pixels = image.pixels if isinstance(image, DeepImage) else np.asarray(image)
    if image.mode != "RGBA":
        out = np.asarray(cv2.resize(array, size, interpolation=interpolation), array.dtype)
    else:
        out = _resample_premultiplied(array, size, interpolation)
    if isinstance(image, DeepImage):
        return DeepImage(out.astype(np.uint16))
    return Image.fromarray(out)


def _resample_premultiplied(rgba: Pixels, size: Size, interpolation: int) -> Pixels:
    top = float(np.iinfo(rgba.dtype).max)
    pixels = rgba.astype(np.float32)
    alpha = pixels[..., 3:] / top
    pixels[..., :3] *= alpha
    out = np.clip(cv2.resize(pixels, size, interpolation=interpolation), 0.0, top)
    new_alpha = out[..., 3:] / top
    # Where nothing is visible any more the colour is undefined: keep it black.
    out[..., :3] = np.where(new_alpha > 1e-4, out[..., :3] / np.maximum(new_alpha, 1e-4), 0.0)
    result: Any = np.clip(np.rint(out), 0, top).astype(rgba.dtype)
    return result


def crop(image: AnyImage, params: CropParams, ctx: OpContext) -> AnyImage:
    """Cut a box (which must lie inside the image), or centre-crop to an aspect ratio."""
    check_mode(image)
    left, top, width, height = crop_box(image.size, params)
    return _crop(image, (left, top, left + width, top + height))


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


def convert(image: AnyImage, params: ConvertParams, ctx: OpContext) -> AnyImage:
    """Change colour mode; dropping alpha lays the image on `params.background`."""
    check_mode(image)
    if isinstance(image, DeepImage):
        return _convert_deep(image, params)
    if params.mode == "rgba":
        return image.convert("RGBA")
    flat = _flatten(image, params.background) if image.mode == "RGBA" else image
    return flat.convert("L" if params.mode == "gray" else "RGB")


def _flatten(rgba: Image.Image, background: str) -> Image.Image:
    base = Image.new("RGB", rgba.size, background)
    base.paste(rgba, mask=rgba.getchannel("A"))
    return base


def _convert_deep(image: DeepImage, params: ConvertParams) -> DeepImage:
    """`convert` at 16 bits: grey by Rec. 601 luma, alpha laid on the background colour."""
    pixels: Any = image.pixels.astype(np.float32)
    rgb: Any = np.dstack([pixels] * 3) if pixels.ndim == 2 else pixels[..., :3]
    if params.mode == "rgba":
        alpha = pixels[..., 3] if image.mode == "RGBA" else np.full(rgb.shape[:2], MAX16)
        return DeepImage(np.rint(np.dstack([rgb, alpha])).astype(np.uint16))
    if image.mode == "RGBA":
        alpha = pixels[..., 3:] / MAX16
        background = np.array(ImageColor.getrgb(params.background)[:3], np.float32) * 257
        rgb = rgb * alpha + background * (1 - alpha)
    out = rgb @ np.array([0.299, 0.587, 0.114], np.float32) if params.mode == "gray" else rgb
    return DeepImage(np.clip(np.rint(out), 0, MAX16).astype(np.uint16))
