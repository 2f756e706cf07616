"""Tone and colour ops: auto_levels, white_balance, exposure.

Gains that model light (white balance, exposure) are applied in linear light: in
sRGB-encoded values a doubling of light is not a doubling of the number, and
scaling encoded values shifts hues in shadows differently from highlights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from jobs.ops.classic import AutoLevelsParams, ExposureParams, WhiteBalanceParams
from pipelines.base import OpContext
from pipelines.classic.pixels import (
    F32,
    AnyImage,
    Pixels,
    apply_curve,
    histogram,
    linear_table,
    luma,
    percentile_levels,
    split,
    to_linear,
    to_srgb,
)

# Gray world fails on scenes that really are one colour (a red wall, a blue sky);
# capping the gains keeps such a scene from being repainted in the opposite colour.
MAX_GAIN = 4.0
# white_patch takes the brightest this-percent of unclipped pixels as "white".
WHITE_PATCH_PERCENT = 1.0
CLIPPED_LEVEL = 250
# The Minkowski norm of shades_of_gray: 6 is the literature's choice; measured here
# it roughly halves gray world's error on real photos without a cast.
SHADES_OF_GRAY_NORM = 6.0


def auto_levels(image: AnyImage, params: AutoLevelsParams, ctx: OpContext) -> AnyImage:
    """Stretch tones so the darkest/brightest `clip_percent` % reach black and white.

    Linked (default): one curve for every channel, so colours keep their balance.
    `per_channel`: each channel stretched on its own, which also removes a cast.
    Works at the image's depth: a 16-bit scan is stretched with a 65536-level curve,
    so a narrow range of levels spreads out instead of collapsing to a few.
    """
    planes = split(image)
    samples = planes.samples()
    clip = params.clip_percent
    if params.per_channel or planes.is_gray:
        curves = [_stretch_curve(histogram(samples[:, c]), clip) for c in range(samples.shape[1])]
    else:
        curves = [_stretch_curve(histogram(samples), clip)] * 3
    if planes.is_gray:
        return planes.rebuild(apply_curve(planes.color, curves[0]))
    channels = [apply_curve(planes.color[..., c], curves[c]) for c in range(3)]
    return planes.rebuild(np.dstack(channels))


def _stretch_curve(hist: NDArray[np.int64], clip_percent: float) -> F32:
    low, high = percentile_levels(hist, clip_percent, clip_percent)
    levels = np.arange(len(hist), dtype=np.float32)
    if high <= low:  # a flat channel has no range to stretch
        return levels
    return (levels - low) * np.float32((len(hist) - 1) / (high - low))


def white_balance(image: AnyImage, params: WhiteBalanceParams, ctx: OpContext) -> AnyImage:
    """Neutralise a colour cast by per-channel gains in linear light.

    What comes out neutral: shades_of_gray, the channels' 6-norm averages (Finlayson
    and Trezzi; far more robust than the plain average on real scenes); gray_world,
    the plain average; white_patch, the brightest unclipped pixels. Gains keep the
    reference's brightness; `strength` blends from no change (0) to full correction
    (1). Gray images are returned unchanged.
    """
    planes = split(image)
    if planes.is_gray:
        return planes.rebuild(planes.color.copy())
    reference = reference_white(planes.samples(), params.method)
    gains = np.clip(reference.mean() / np.maximum(reference, 1e-6), 1 / MAX_GAIN, MAX_GAIN)
    gains = gains**params.strength
    ctx.info["gains"] = [round(float(g), 4) for g in gains]
    linear = to_linear(planes.color) * gains.astype(np.float32)
    return planes.rebuild(to_srgb(linear, planes.deep))


def reference_white(samples: Pixels, method: str) -> NDArray[np.float64]:
    """The linear RGB colour that should come out neutral, from N x 3 pixels (uint8/16)."""
    norm = SHADES_OF_GRAY_NORM if method == "shades_of_gray" else 1.0
    if method == "white_patch":
        samples = _brightest(samples)
    return np.array([_linear_norm(samples[:, c], norm) for c in range(3)])


def _brightest(samples: Pixels) -> Pixels:
    clipped = CLIPPED_LEVEL * (257 if samples.dtype == np.uint16 else 1)
    unclipped = samples[samples.max(axis=1) < clipped]
    pool = unclipped if len(unclipped) >= 100 else samples
    brightness = luma(pool)
    return pool[brightness >= np.percentile(brightness, 100.0 - WHITE_PATCH_PERCENT)]


def _linear_norm(channel: Pixels, norm: float) -> float:
    """The channel's Minkowski `norm`-mean in linear light (1: the plain mean)."""
    # Via the histogram: exact, and no float copy of every pixel.
    hist = histogram(channel).astype(np.float64)
    powered = linear_table(channel.dtype == np.uint16).astype(np.float64) ** norm
    return float((hist @ powered / max(hist.sum(), 1.0)) ** (1.0 / norm))


def exposure(image: AnyImage, params: ExposureParams, ctx: OpContext) -> AnyImage:
    """Brighten or darken by `ev` stops: linear light times 2**ev, highlights clip."""
    planes = split(image)
    levels: Any = np.arange(planes.levels, dtype=planes.color.dtype)
    gain = np.float32(2.0**params.ev)
    curve = to_srgb(to_linear(levels) * gain, planes.deep).astype(np.float32)
    return planes.rebuild(apply_curve(planes.color, curve))
