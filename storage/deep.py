"""16-bit images: what an archive scan is, and what PIL cannot hold in colour.

PIL has no 16-bit RGB mode (it reads a 48-bit TIFF as 8-bit 'RGB'), so 16-bit inputs
are decoded with OpenCV into a `DeepImage` and classic ops work on its array at full
depth; ops that need PIL (generative, portrait) get `to_8bit()`. Written out as 16-bit
PNG or TIFF, or dithered to 8 bits for JPEG and WebP (dither: random rectangular noise
of one 8-bit step before truncation, seeded, so the same pixels give the same bytes;
without it a smooth 16-bit gradient bands into visible steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

U16 = NDArray[np.uint16]
MAX16 = 65535
DITHER_SEED = 0
MODES = {2: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True, eq=False)
class DeepImage:
    """A 16-bit image.

    pixels: H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA, straight alpha), uint16,
        0..65535, in the colour space its metadata's ICC profile names (sRGB if none).
    """

    pixels: U16

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint16 or self.pixels.ndim not in (2, 3):
            raise ValueError(f"DeepImage takes H x W (x C) uint16, not {self.pixels.dtype}")

    @property
    def mode(self) -> str:
        """The PIL mode of the 8-bit equivalent: 'L', 'RGB' or 'RGBA'."""
        return "L" if self.pixels.ndim == 2 else MODES[self.pixels.shape[2]]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as PIL's `Image.size`."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def to_8bit(self, *, dither: bool = False) -> Image.Image:
        """The image as 8-bit PIL ('L', 'RGB' or 'RGBA'); `dither` hides banding in colour."""
        return Image.fromarray(to_u8(self.pixels, dither=dither), self.mode)


def to_u8(pixels: U16, *, dither: bool = False) -> NDArray[np.uint8]:
    """uint16 0..65535 -> uint8 0..255, rounded or dithered (alpha is always rounded)."""
    scaled = pixels.astype(np.float32) * np.float32(255.0 / MAX16)
    if not dither:
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(DITHER_SEED)
    noise = rng.random(scaled.shape, dtype=np.float32)
    if scaled.ndim == 3 and scaled.shape[2] == 4:
        noise[..., 3] = 0.5  # alpha: plain rounding
    return np.clip(np.floor(scaled + noise), 0, 255).astype(np.uint8)


def from_u8(pixels: NDArray[np.uint8]) -> U16:
    """uint8 0..255 -> uint16 0..65535 (x 257, so 255 maps to 65535 exactly)."""
    return (pixels.astype(np.uint16) * np.uint16(257)).astype(np.uint16)


def working_deep(pixels: U16) -> DeepImage:
    """A decoded 16-bit array (grey, grey+alpha, RGB, RGBA) in darkroom's working form:
    grey+alpha becomes RGBA, and an alpha channel that is opaque everywhere is dropped."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] == 2:
        grey, alpha = pixels[..., 0], pixels[..., 1]
        if int(alpha.min()) == MAX16:
            return DeepImage(np.ascontiguousarray(grey))
        pixels = np.dstack([grey, grey, grey, alpha])
    if pixels.ndim == 3 and pixels.shape[2] == 4 and int(pixels[..., 3].min()) == MAX16:
        pixels = pixels[..., :3]
    return DeepImage(np.ascontiguousarray(pixels))


def as_pil(image: Image.Image | DeepImage) -> Image.Image:
    """`image` as PIL, 8 bits (rounded) if it was deep: for ops that only take PIL."""
    return image.to_8bit() if isinstance(image, DeepImage) else image
