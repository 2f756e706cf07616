"""Detail ops: denoise (non-local means) and sharpen (unsharp mask on luma)."""

from __future__ import annotations

import cv2
import numpy as np

from jobs.ops.classic import DenoiseParams, SharpenParams
from pipelines.base import OpContext
from pipelines.classic.pixels import F32, AnyImage, Planes, as_f32, split

# Non-local means compares 7x7 patches within a search window; the window sets the
# cost. A preview gets a smaller window: about 3x faster, a little less smoothing.
PATCH = 7
SEARCH_FINAL = 21
SEARCH_PREVIEW = 11
# OpenCV's NORM_L1 weights patches by exp(-d/h) where L2 uses exp(-d^2/h^2): for the
# same smoothing h must grow: 1.75 left sigma-10 noise at std 1.4 levels against 1.5
# for the 8-bit filter at h=7 (measured on a 128 px gradient, 2026-11-30).
L1_FACTOR = 1.75
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601


def denoise(image: AnyImage, params: DenoiseParams, ctx: OpContext) -> AnyImage:
    """Non-local-means noise reduction.

    `strength` is the filter's h; about 0.7x the noise's standard deviation in levels
    works best on photos (h=7 for sigma 10, h=14 for sigma 20). 16-bit images are
    filtered at 16 bits (OpenCV's L1-norm variant, the one that takes uint16) with h
    scaled to 16-bit levels, per channel rather than in LAB.
    """
    planes = split(image)
    search = SEARCH_PREVIEW if ctx.preview else SEARCH_FINAL
    h = float(params.strength)
    if planes.deep:
        return planes.rebuild(_denoise16(planes, h, search))
    if planes.is_gray:
        out = cv2.fastNlMeansDenoising(planes.color, None, h, PATCH, search)
    else:
        # Same h for chroma: measured best on real photos with sensor-like noise.
        out = cv2.fastNlMeansDenoisingColored(planes.color, None, h, h, PATCH, search)
    return planes.rebuild(np.asarray(out, dtype=np.uint8))


def _denoise16(planes: Planes, h: float, search: int) -> np.ndarray:
    channels = 1 if planes.is_gray else 3
    # h in 16-bit levels; the L1 norm weighs distances linearly, hence the factor.
    return np.asarray(
        cv2.fastNlMeansDenoising(
            planes.color,
            h=[h * 257.0 * L1_FACTOR] * channels,
            templateWindowSize=PATCH,
            searchWindowSize=search,
            normType=cv2.NORM_L1,
        ),
        dtype=np.uint16,
    )


def sharpen(image: AnyImage, params: SharpenParams, ctx: OpContext) -> AnyImage:
    """Unsharp mask on luma: add back `amount` x (luma - blur(luma, radius)).

    Differences smaller than `threshold` levels are left alone, so flat areas and
    fine noise are not sharpened (and those pixels come back unchanged). The same
    luma change is added to R, G and B, which keeps chroma: no coloured halos.
    """
    planes = split(image)
    color = planes.color.astype(np.float32)
    luma = color if planes.is_gray else color @ LUMA_WEIGHTS
    change = np.float32(params.amount) * _detail(luma, params, planes.top / 255)
    out = color + (change if planes.is_gray else change[..., None])
    return planes.rebuild(out)


def _detail(luma: F32, params: SharpenParams, scale: float = 1.0) -> F32:
    blurred = cv2.GaussianBlur(luma, (0, 0), sigmaX=params.radius, borderType=cv2.BORDER_REFLECT)
    detail = luma - as_f32(blurred)
    if params.threshold > 0:
        threshold = params.threshold * scale
        detail = np.where(np.abs(detail) >= threshold, detail, np.float32(0.0))
    return detail.astype(np.float32)
