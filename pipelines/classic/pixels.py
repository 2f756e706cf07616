"""How classic ops see an image: colour pixels as a NumPy array, alpha kept aside.

Every tonal op works on `Planes.color` (H x W x 3 RGB or H x W gray; uint8 for PIL
images, uint16 for 16-bit `DeepImage`s, so archive scans keep their depth) and
rebuilds the image with the alpha it came with, so RGBA transparency is never
touched. Also here: sRGB <-> linear-light conversion through lookup tables, and
percentiles from histograms (exact for uint8 and uint16, far faster than sorting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from jobs.errors import InputInvalid
from pipelines.base import AnyImage
from storage.deep import DeepImage

U8 = NDArray[np.uint8]
U16 = NDArray[np.uint16]
Pixels = NDArray[np.uint8] | NDArray[np.uint16]
F32 = NDArray[np.float32]

SUPPORTED_MODES = ("RGB", "RGBA", "L")

# Linear light -> sRGB is read from a table indexed by a 16-bit quantised value:
# fine enough that a round trip through linear light returns every uint8 level.
_LINEAR_STEPS = 65535


@dataclass(frozen=True)
class Planes:
    """An image split into colour pixels and an optional alpha plane."""

    color: Pixels
    """H x W x 3 (RGB) or H x W (gray), uint8 0..255 or uint16 0..65535."""
    alpha: Pixels | None = None

    @property
    def is_gray(self) -> bool:
        return self.color.ndim == 2

    @property
    def deep(self) -> bool:
        return self.color.dtype == np.uint16

    @property
    def top(self) -> int:
        """The brightest level: 255 (8-bit) or 65535 (16-bit)."""
        return 65535 if self.deep else 255

    @property
    def levels(self) -> int:
        return self.top + 1

    def rebuild(self, color: NDArray[np.generic]) -> AnyImage:
        """The image of `color` (floats are rounded and clipped to this depth) with this
        image's alpha (if any) put back: PIL for 8-bit, `DeepImage` for 16-bit."""
        dtype = np.uint16 if self.deep else np.uint8
        if color.dtype != dtype:
            color = np.clip(np.rint(color), 0, self.top).astype(dtype)
        full = color if color.ndim == 2 or self.alpha is None else np.dstack([color, self.alpha])
        if self.deep:
            return DeepImage(np.ascontiguousarray(full.astype(np.uint16)))
        return Image.fromarray(np.ascontiguousarray(full.astype(np.uint8)))

    def samples(self) -> Pixels:
        """The visible pixels (alpha > 0) as N x C rows, for statistics."""
        rows = self.color.reshape(-1, 1 if self.is_gray else 3)
        if self.alpha is None:
            return rows
        visible = rows[self.alpha.reshape(-1) > 0]
        # A fully transparent image has no visible pixels; use them all instead.
        return visible if len(visible) else rows


def split(image: AnyImage) -> Planes:
    """Split `image` into planes; modes other than RGB, RGBA and L are rejected."""
    check_mode(image)
    array: Pixels = image.pixels if isinstance(image, DeepImage) else np.array(image, np.uint8)
    if image.mode == "RGBA":
        color: Any = np.ascontiguousarray(array[..., :3])
        return Planes(color=color, alpha=array[..., 3].copy())
    return Planes(color=array)


def as_u8(array: object) -> U8:
    """An OpenCV result typed as the uint8 array it is (no copy)."""
    return np.asarray(array, dtype=np.uint8)


def as_f32(array: object) -> F32:
    """An OpenCV result typed as the float32 array it is (no copy)."""
    return np.asarray(array, dtype=np.float32)


def check_mode(image: AnyImage) -> None:
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


def _srgb_to_linear(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """The sRGB transfer function inverted (IEC 61966-2-1): encoded 0..1 -> linear 0..1."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: NDArray[np.floating]) -> NDArray[np.floating]:
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.maximum(v, 0) ** (1 / 2.4) - 0.055)


SRGB16_TO_LINEAR: F32 = _srgb_to_linear(np.arange(65536) / 65535.0).astype(np.float32)


def linear_table(deep: bool) -> F32:
    """Linear light (0..1) of every sRGB level: 256 entries, or 65536 for 16-bit."""
    return SRGB16_TO_LINEAR if deep else SRGB_TO_LINEAR


def to_linear(color: Pixels) -> F32:
    """sRGB-encoded uint8 or uint16 pixels as linear light in 0..1."""
    return linear_table(color.dtype == np.uint16)[color]


def to_srgb(linear: NDArray[np.floating], deep: bool = False) -> Pixels:
    """Linear light (clipped to 0..1) back to sRGB-encoded uint8 (or uint16 if `deep`)."""
    clipped = np.clip(linear, 0.0, 1.0)
    if deep:  # computed, not tabled: a 16-bit table would lose the darkest steps
        encoded = _linear_to_srgb(clipped.astype(np.float32)) * np.float32(65535.0)
        return np.rint(encoded).astype(np.uint16)
    index = clipped * _LINEAR_STEPS + 0.5
    return LINEAR_TO_SRGB[index.astype(np.uint16)]


def apply_curve(color: Pixels, curve: NDArray[np.floating]) -> Pixels:
    """Map every level through `curve` (one value per level: 256 for uint8 pixels,
    65536 for uint16), rounded and clipped to the pixels' range."""
    table = np.clip(np.rint(curve), 0, len(curve) - 1).astype(color.dtype)
    return table[color]  # type: ignore[no-any-return]


def histogram(channel: Pixels) -> NDArray[np.int64]:
    """Pixel count per level: 256 bins for uint8, 65536 for uint16."""
    return np.bincount(channel.reshape(-1), minlength=65536 if channel.dtype == np.uint16 else 256)


def percentile_levels(hist: NDArray[np.int64], low_pct: float, high_pct: float) -> tuple[int, int]:
    """The levels below which `low_pct` % and above which `high_pct` % of pixels lie."""
    cumulative = np.cumsum(hist)
    total = cumulative[-1]
    low = int(np.searchsorted(cumulative, total * low_pct / 100.0, side="right"))
    high = int(np.searchsorted(cumulative, total * (1.0 - high_pct / 100.0), side="left"))
    top = len(hist) - 1
    return min(low, top), min(high, top)


def luma(rgb: Pixels) -> F32:
    """Rec. 601 luma of RGB pixels (last axis R, G, B), 0..255 float."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (rgb.astype(np.float32) @ weights).astype(np.float32)
