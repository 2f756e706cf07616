"""Repairs of old photos: dust_scratch_removal and restore_faded_color."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from jobs.ops.classic import DustScratchParams, RestoreFadedParams
from pipelines.base import OpContext
from pipelines.classic.defects import find_defects
from pipelines.classic.pixels import (
    F32,
    AnyImage,
    Planes,
    as_f32,
    as_u8,
    histogram,
    percentile_levels,
    split,
)
from storage.deep import from_u8, to_u8

# Telea inpainting looks this many pixels around each hole for colour to carry in.
INPAINT_RADIUS = 3
# restore_faded_color: the tail clipped per channel when the channels are stretched,
# the chroma (LAB units, 90th percentile) saturation recovery aims for, and its cap.
FADED_CLIP_PERCENT = 0.5
TARGET_CHROMA = 40.0
MAX_SATURATION_GAIN = 2.0


def dust_scratch_removal(image: AnyImage, params: DustScratchParams, ctx: OpContext) -> AnyImage:
    """Find thin bright and dark defects (dust, scratches) and inpaint them.

    Only defects up to `max_defect_px` wide are looked for; `sensitivity` trades
    missed faint defects (0) against touching fine detail that looks like one (1).
    What was repaired is recorded in `ctx.info["defect_fraction"]`. A 16-bit image is
    searched and inpainted on its 8-bit view (OpenCV inpaints 8-bit colour only); only
    the repaired pixels take the new values, every other pixel keeps its 16 bits.
    """
    planes = split(image)
    color8 = to_u8(planes.color) if planes.deep else as_u8(planes.color)  # type: ignore[arg-type]
    mask = find_defects(color8, params.sensitivity, params.max_defect_px)
    ctx.info["defect_fraction"] = round(float(np.count_nonzero(mask)) / mask.size, 6)
    if not mask.any():
        return planes.rebuild(planes.color.copy())
    repaired = as_u8(cv2.inpaint(color8, mask, INPAINT_RADIUS, cv2.INPAINT_TELEA))
    if not planes.deep:
        return planes.rebuild(repaired)
    out = planes.color.copy()
    out[mask > 0] = from_u8(repaired)[mask > 0]
    return planes.rebuild(out)


def restore_faded_color(image: AnyImage, params: RestoreFadedParams, ctx: OpContext) -> AnyImage:
    """Bring back the contrast, neutrality and saturation a faded print lost.

    1. stretch each channel between its own 0.5th and 99.5th percentiles: this lifts
       the fog out of the shadows, restores contrast and removes the cast the dyes'
       unequal fading left; 2. scale LAB chroma so the image's colourful pixels reach
       a normal print's saturation (never desaturating, at most 2x); 3. blend with
       the input by `strength`. It assumes each channel should span the full range,
       so a scene that is truly one colour (an orange cat on a red rug) loses some
       of its warmth. Gray images get step 1 only.
    """
    planes = split(image)
    stretched = _stretch_channels(planes)  # 0..top of the image's depth
    if planes.is_gray:
        restored: NDArray[np.floating] = stretched
    else:
        scale = np.float32(planes.top / 255.0)
        restored, gain = _recover_saturation(stretched / scale)
        restored = restored * scale
        ctx.info["saturation_gain"] = round(gain, 3)
    blended = planes.color * (1.0 - params.strength) + restored * params.strength
    return planes.rebuild(blended)


def _stretch_channels(planes: Planes) -> F32:
    samples = planes.samples()
    color = planes.color if not planes.is_gray else planes.color[..., None]
    channels = []
    for c in range(samples.shape[1]):
        low, high = percentile_levels(
            histogram(samples[:, c]), FADED_CLIP_PERCENT, FADED_CLIP_PERCENT
        )
        scale = planes.top / (high - low) if high > low else 1.0
        levels = np.arange(planes.levels, dtype=np.float32)
        curve = np.clip((levels - low) * np.float32(scale), 0.0, float(planes.top))
        channels.append(curve[color[..., c]])
    stacked = np.dstack(channels).astype(np.float32)
    return stacked[..., 0] if planes.is_gray else stacked


def _recover_saturation(rgb: F32) -> tuple[F32, float]:
    lab = as_f32(cv2.cvtColor(rgb / np.float32(255.0), cv2.COLOR_RGB2LAB))
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    current = float(np.percentile(chroma[:: max(1, chroma.shape[0] // 256)], 90))
    gain = float(np.clip(TARGET_CHROMA / max(current, 1e-3), 1.0, MAX_SATURATION_GAIN))
    lab[..., 1:] *= np.float32(gain)
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0
    # float LAB keeps the fractions, so a 16-bit input loses no levels here
    return np.clip(out, 0.0, 255.0).astype(np.float32), gain
