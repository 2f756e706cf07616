"""Detail ops: denoise (non-local means) and sharpen (unsharp mask on luma)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from jobs.ops.classic import DenoiseParams, SharpenParams
from pipelines.base import OpContext
from pipelines.classic.pixels import U8, F32, split

# Non-local means compares 7x7 patches within a search window; the window sets the
# cost. A preview gets a smaller window: about 3x faster, a little less smoothing.
PATCH = 7
SEARCH_FINAL = 21
SEARCH_PREVIEW = 11


def denoise(image: Image.Image, params: DenoiseParams, ctx: OpContext) -> Image.Image:
    """Non-local-means noise reduction.

    `strength` is the filter's h; about 0.7x the noise's standard deviation in levels
    works best on photos (h=7 for sigma 10, h=14 for sigma 20).
    """
    planes = split(image)
    search = SEARCH_PREVIEW if ctx.preview else SEARCH_FINAL
    h = float(params.strength)
    if planes.is_gray:
        out = cv2.fastNlMeansDenoising(planes.color, None, h, PATCH, search)
    else:
        # Same h for chroma: measured best on real photos with sensor-like noise.
        out = cv2.fastNlMeansDenoisingColored(planes.color, None, h, h, PATCH, search)
    return planes.rebuild(out)


def sharpen(image: Image.Image, params: SharpenParams, ctx: OpContext) -> Image.Image:
    """Unsharp mask on luma: add back `amount` x (image - blur(radius)).

    Differences smaller than `threshold` levels are left alone, so flat areas and
    fine noise are not sharpened. Working on luma only avoids coloured halos.
    """
    planes = split(image)
    if planes.is_gray:
        return planes.rebuild(_unsharp(planes.color, params))
    ycrcb = cv2.cvtColor(planes.color, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = _unsharp(np.ascontiguousarray(ycrcb[..., 0]), params)
    return planes.rebuild(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB))


def _unsharp(channel: U8, params: SharpenParams) -> U8:
    source: F32 = channel.astype(np.float32)
    blurred = cv2.GaussianBlur(source, (0, 0), sigmaX=params.radius, borderType=cv2.BORDER_REFLECT)
    detail = source - blurred
    if params.threshold > 0:
        detail = np.where(np.abs(detail) >= params.threshold, detail, np.float32(0.0))
    out = source + np.float32(params.amount) * detail
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
