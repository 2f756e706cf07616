"""Finding dust and scratches: thin bright or dark marks that do not belong to the scene.

1. Morphological top-hat (bright) and black-hat (dark) with a disc just wider than
   the widest defect give how far each pixel stands out from its surroundings, per
   colour channel (a white speck on orange stands out far more in blue than in luma).
2. A mark on a smooth area is a defect; the same contrast inside texture (hair,
   fabric, foliage) is usually detail. So the response is discounted by the local
   spread of the background the morphology estimated.
3. Hysteresis: pixels over a low threshold form candidate marks; a mark is kept if
   it peaks over the high threshold (both set by sensitivity).
4. Shape: a speck fits inside the defect size; a scratch is long and on average no
   wider than the defect size. Anything else (an eye, a letter) is left alone.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from pipelines.classic.pixels import F32, U8, as_u8

# The high threshold (levels of contrast above the local spread) at sensitivity 0
# and 1; the low threshold is a fixed share of it.
THRESHOLD_AT_0 = 100.0
THRESHOLD_AT_1 = 30.0
LOW_SHARE = 0.6
# How much local background spread (std, levels) discounts a pixel's contrast, and
# the window it is measured over.
TEXTURE_WEIGHT = 3.0
TEXTURE_WINDOW = 15
# A scratch is at least this many defect widths long.
SCRATCH_LENGTH_FACTOR = 6


def find_defects(color: U8, sensitivity: float, max_defect_px: int) -> U8:
    """A 0/255 mask of the defects in an RGB or gray array, grown a pixel for soft edges."""
    channels = [color] if color.ndim == 2 else [color[..., c] for c in range(color.shape[2])]
    score = np.maximum.reduce([_score(np.ascontiguousarray(ch), max_defect_px) for ch in channels])
    high = THRESHOLD_AT_0 + (THRESHOLD_AT_1 - THRESHOLD_AT_0) * sensitivity
    marks = _marks_by_hysteresis(score, LOW_SHARE * high, high, max_defect_px)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return as_u8(cv2.dilate(marks, grow))


def _score(channel: U8, max_defect_px: int) -> F32:
    """How much each pixel stands out, less what its surroundings' texture explains."""
    contrast, background = _contrast_and_background(channel, max_defect_px)
    return contrast - TEXTURE_WEIGHT * _local_std(background)


def _contrast_and_background(gray: U8, max_defect_px: int) -> tuple[F32, F32]:
    """Per pixel: how far it stands out (levels), and the scene without the defect."""
    size = max_defect_px + 2
    size += 1 - size % 2  # the smallest odd disc wider than the widest defect
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, disc).astype(np.float32)
    closed = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, disc).astype(np.float32)
    source = gray.astype(np.float32)
    bright, dark = source - opened, closed - source
    background = np.where(bright >= dark, opened, closed).astype(np.float32)
    return np.maximum(bright, dark), background


def _local_std(values: F32) -> F32:
    window = (TEXTURE_WINDOW, TEXTURE_WINDOW)
    mean = cv2.blur(values, window)
    mean_sq = cv2.blur(values * values, window)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)).astype(np.float32)


def _marks_by_hysteresis(score: F32, low: float, high: float, max_defect_px: int) -> U8:
    candidates = (score > low).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    peaks_high = np.zeros(count, bool)
    peaks_high[np.unique(labels[score > high])] = True
    keep = peaks_high & _defect_shaped(np.asarray(stats, dtype=np.int32), max_defect_px)
    keep[0] = False  # label 0 is everything below the low threshold
    return np.where(keep[labels], np.uint8(255), np.uint8(0)).astype(np.uint8)


def _defect_shaped(stats: NDArray[np.int32], max_defect_px: int) -> NDArray[np.bool_]:
    width, height = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA]
    speck = np.maximum(width, height) <= max_defect_px + 1
    length = np.hypot(width, height)
    scratch = (length >= SCRATCH_LENGTH_FACTOR * max_defect_px) & (area <= max_defect_px * length)
    return np.asarray(speck | scratch)
