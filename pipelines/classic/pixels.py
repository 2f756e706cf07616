"""How classic ops see an image: colour pixels as a NumPy array, alpha kept aside.

Every tonal op works on `Planes.color` (H x W x 3 RGB or H x W gray, uint8) and
rebuilds the image with the alpha it came with, so RGBA transparency is never
touched. Also here: sRGB <-> linear-light conversion through lookup tables, and
percentiles from histograms (exact for uint8, and far faster than sorting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from jobs.errors import InputInvalid

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]

SUPPORTED_MODES = ("RGB", "RGBA", "L")

# Linear light -> sRGB is read from a table indexed by a 16-bit quantised value:
# fine enough that a round trip through linear light returns every uint8 level.
_LINEAR_STEPS = 65535


@dataclass(frozen=True)
class Planes:
    """An image split into colour pixels and an optional alpha plane."""

    color: U8
    """H x W x 3 (RGB) or H x W (gray), uint8."""
    alpha: U8 | None = None

    @property
    def is_gray(self) -> bool:
        return self.color.ndim == 2

    def rebuild(self, color: U8) -> Image.Image:
        """A PIL image of `color` with this image's alpha (if any) put back."""
        if color.ndim == 2:
            return Image.fromarray(color)
        if self.alpha is None:
            return Image.fromarray(color)
        return Image.fromarray(np.dstack([color, self.alpha]))

    def samples(self) -> U8:
        """The visible pixels (alpha > 0) as N x C rows, for statistics."""
        rows = self.color.reshape(-1, 1 if self.is_gray else 3)
        if self.alpha is None:
            return rows
        visible = rows[self.alpha.reshape(-1) > 0]
        # A fully transparent image has no visible pixels; use them all instead.
        return visible if len(visible) else rows


def split(image: Image.Image) -> Planes:
    """Split `image` into planes; modes other than RGB, RGBA and L are rejected."""
    check_mode(image)
    array = np.array(image, dtype=np.uint8)
    if image.mode == "RGBA":
        return Planes(color=np.ascontiguousarray(array[..., :3]), alpha=array[..., 3].copy())
    return Planes(color=array)


def as_u8(array: object) -> U8:
    """An OpenCV result typed as the uint8 array it is (no copy)."""
    return np.asarray(array, dtype=np.uint8)


def as_f32(array: object) -> F32:
    """An OpenCV result typed as the float32 array it is (no copy)."""
    return np.asarray(array, dtype=np.float32)


def check_mode(image: Image.Image) -> None:
    if image.mode not in SUPPORTED_MODES:
        raise InputInvalid(
            f"image mode {image.mode} is not supported; classic ops take RGB, RGBA or L "
            "(add a 'convert' step first)"
        )


def _srgb_to_linear_table() -> F32:
    v = np.arange(256, dtype=np.float64) / 255.0
    linear = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


def _linear_to_srgb_table() -> U8:
    v = np.arange(_LINEAR_STEPS + 1, dtype=np.float64) / _LINEAR_STEPS
    srgb = np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8)


SRGB_TO_LINEAR: F32 = _srgb_to_linear_table()
LINEAR_TO_SRGB: U8 = _linear_to_srgb_table()


def to_linear(color: U8) -> F32:
    """sRGB-encoded uint8 pixels as linear light in 0..1."""
    return SRGB_TO_LINEAR[color]


def to_srgb(linear: NDArray[np.floating]) -> U8:
    """Linear light (clipped to 0..1) back to sRGB-encoded uint8 pixels."""
    index = np.clip(linear, 0.0, 1.0) * _LINEAR_STEPS + 0.5
    return LINEAR_TO_SRGB[index.astype(np.uint16)]


def apply_curve(color: U8, curve: NDArray[np.floating]) -> U8:
    """Map every level through `curve` (256 values, clipped to 0..255)."""
    table = np.clip(np.rint(curve), 0, 255).astype(np.uint8)
    return table[color]


def histogram(channel: NDArray[np.uint8]) -> NDArray[np.int64]:
    return np.bincount(channel.reshape(-1), minlength=256)


def percentile_levels(hist: NDArray[np.int64], low_pct: float, high_pct: float) -> tuple[int, int]:
    """The levels below which `low_pct` % and above which `high_pct` % of pixels lie."""
    cumulative = np.cumsum(hist)
    total = cumulative[-1]
    low = int(np.searchsorted(cumulative, total * low_pct / 100.0, side="right"))
    high = int(np.searchsorted(cumulative, total * (1.0 - high_pct / 100.0), side="left"))
    return min(low, 255), min(high, 255)


def luma(rgb: U8) -> F32:
    """Rec. 601 luma of RGB pixels (last axis R, G, B), 0..255 float."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (rgb.astype(np.float32) @ weights).astype(np.float32)
