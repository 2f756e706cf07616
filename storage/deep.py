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

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from jobs.errors import InputInvalid

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


def is_16bit(image: Image.Image) -> bool:
    """True for PNG and TIFF files with 16-bit samples (PIL would cut them to 8 bits)."""
    if image.format not in ("PNG", "TIFF") or image.mode in ("I", "F"):
        return False
    if image.mode.startswith("I;16"):
        return True
    tile = getattr(image, "tile", None)
    raw = tile[0].args if tile else None
    rawmode = raw[0] if isinstance(raw, tuple) else raw
    return isinstance(rawmode, str) and ";16" in rawmode


def decode_deep(data: bytes, count: int, kind: str, orientation: int) -> list[DeepImage]:
    """The `count` frames of a 16-bit PNG or TIFF, upright (EXIF `orientation` 1-8),
    RGB(A) order, in working form (see `working_deep`).

    Raises:
        InputInvalid: OpenCV could not decode the file at 16 bits.
    """
    buffer = np.frombuffer(data, np.uint8)
    if count > 1:
        ok, arrays = cv2.imdecodemulti(buffer, cv2.IMREAD_UNCHANGED)
        decoded = list(arrays) if ok else []
    else:
        one = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        decoded = [one] if one is not None else []
    if not decoded or any(a.dtype != np.uint16 for a in decoded):
        raise InputInvalid(f"truncated or corrupt 16-bit {kind}: OpenCV could not decode it")
    return [working_deep(_upright(_rgb_order(a), orientation)) for a in decoded]


def _rgb_order(array: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) channel order as RGB(A)."""
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[..., [2, 1, 0, *([3] if array.shape[2] == 4 else [])]])
    return array


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an H x W (x C) array."""
    if orientation in (5, 6, 7, 8):
        array = np.rot90(array, k=-1 if orientation in (5, 6) else 1)
        orientation = {5: 2, 6: 1, 7: 2, 8: 1}[orientation]
    flips = {2: array[:, ::-1], 3: array[::-1, ::-1], 4: array[::-1]}
    return np.ascontiguousarray(flips.get(orientation, array))
