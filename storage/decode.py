"""Checked decoding of an input into a `Picture`: every frame, its depth and its metadata.

`decode_picture` is a numbered recipe that refuses bad input before paying for it: the
format is judged by content (Pillow's own header reading), the size by the header, and
only then are pixels decoded. Each frame comes out upright and in a working form:

- 8-bit: PIL 'RGB' (CMYK, YCbCr, LAB, palette converted; an embedded ICC profile
  applied, so the pixels are sRGB), 'RGBA' only when alpha carries information, 'L'
  for greyscale;
- 16-bit PNG and TIFF: a `DeepImage` (uint16), read with OpenCV because PIL has no
  16-bit colour mode; its ICC profile is kept, not applied.

Multi-page TIFFs give every page, animated GIF/WebP/PNG every frame with its duration;
an MPO (a phone's stereo or depth pair, read as the JPEG it starts with) and a HEIF
collection give their primary image.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from PIL import Image, ImageCms, ImageOps

from jobs.errors import InputInvalid, InputTooLarge
from storage.deep import DeepImage, decode_deep, is_16bit
from storage.formats import apply_limits, register_decoders
from storage.metadata import ORIENTATION, Metadata, read_metadata, srgb_tagged
from storage.sniff import UNKNOWN, sniff

if TYPE_CHECKING:
    from jobs.settings import Settings

Frame = Image.Image | DeepImage
ACCEPTED = "JPEG, PNG, WebP, TIFF, BMP, GIF, AVIF or HEIC"
DEFAULT_DURATION_MS = 100  # a frame that gives no duration: what browsers show it for
ANIMATED = ("GIF", "WEBP", "PNG")  # formats whose frames are an animation
PAGED = ("TIFF",)  # formats whose frames are pages of a document
T = TypeVar("T")
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass
class Picture:
    """A decoded input.

    frames: one or more images in one mode ('RGB', 'RGBA' or 'L'), all PIL 8-bit or all
        `DeepImage` 16-bit; an animation's frames share a size, a document's pages may not.
    durations: milliseconds each frame shows, for animations; empty otherwise.
    loop: how often an animation repeats (0: forever); None for stills and pages.
    pages: True when the frames are pages of a document (multi-page TIFF).
    metadata: what the output keeps by default (see `storage.metadata`).
    format: Pillow's name of the input format ('JPEG', 'TIFF', ...).
    """

    frames: list[Frame]
    metadata: Metadata = field(default_factory=Metadata)
    durations: list[int] = field(default_factory=list)
    loop: int | None = None
    pages: bool = False
    format: str = ""

    @property
    def deep(self) -> bool:
        return isinstance(self.frames[0], DeepImage)

    @property
    def animated(self) -> bool:
        return len(self.frames) > 1 and not self.pages


def decode_picture(data: bytes, settings: Settings, *, name: str | None = None) -> Picture:
    """Every frame of `data`, checked and in working form, or a `JobError` saying why not.

    `name` (a file name, if known) only makes messages clearer ("text file named
    a.png is not an image"); it never decides the format.

    Raises:
        InputInvalid: empty, not an image, unsupported, truncated or corrupt.
        InputTooLarge: over `settings.max_input_pixels` (all frames together).
    """
    # 1. what the bytes are, by content, under the configured limits
    if not data:
        raise InputInvalid(_called("empty file", name))
    apply_limits(settings)
    register_decoders()
    sniffed = sniff(data)
    if not sniffed.supported:
        raise InputInvalid(unsupported_message(sniffed.kind, name, data))
    kind = sniffed.kind
    # 2. the size the header claims, before any pixel is decoded
    if sniffed.size is not None:
        check_size(*sniffed.size, settings)
    image = _guarded(lambda: Image.open(io.BytesIO(data), formats=[kind]), kind)
    count = _frame_count(image, kind)
    check_size(*image.size, settings, frames=count)
    # 3. the first frame's pixels, its metadata, then every frame in working form
    deep = is_16bit(image)  # before load(), which empties the tile list it reads
    _guarded(image.load, kind)
    metadata = read_metadata(image)
    loop = image.info.get("loop", 0)
    durations: list[int] = []
    if deep:
        orientation = int(image.getexif().get(ORIENTATION, 1) or 1)
        frames: list[Frame] = list(decode_deep(data, count, kind, orientation))
    else:
        frames, durations = _frames(image, count, kind)
        metadata = srgb_tagged(metadata) if metadata.icc else metadata
    animated = kind in ANIMATED and len(frames) > 1
    return Picture(
        frames=_same_mode(frames),
        metadata=metadata,
        durations=durations if animated else [],
        loop=int(loop or 0) if animated else None,
        pages=kind in PAGED and len(frames) > 1,
        format=kind,
    )


def check_size(width: int, height: int, settings: Settings, *, frames: int = 1) -> None:
    """Refuse images over `max_input_pixels` (all frames) or with a side under `min_input_side`.

    Raises:
        InputTooLarge: width x height x frames over the limit.
        InputInvalid: a side shorter than `settings.min_input_side`.
    """
    pixels = width * height * frames
    if pixels > settings.max_input_pixels:
        of = f" x {frames} frames" if frames > 1 else ""
        raise InputTooLarge(
            f"{width}x{height}{of} image has {pixels / 1e6:.1f} megapixels; "
            f"the limit is {settings.max_input_pixels / 1e6:.1f}"
        )
    if min(width, height) < settings.min_input_side:
        raise InputInvalid(
            f"{width}x{height} image is too small; minimum side is {settings.min_input_side} px"
        )


def _called(kind: str, name: str | None) -> str:
    return f"{kind} named {name}" if name else kind


def unsupported_message(kind: str, name: str | None, data: bytes) -> str:
    """Why `data` (identified as `kind`) is refused, and what to send instead."""
    if kind.endswith("image") or kind == "SVG drawing":
        return f"{_called(kind, name)} is not a supported format; convert it to {ACCEPTED}"
    first = f" (first bytes: {data[:8].hex(' ')})" if kind == UNKNOWN else ""
    return f"{_called(kind, name)} is not an image{first}; expected {ACCEPTED}"


def _guarded(read: Callable[[], T], kind: str) -> T:
    """Run a Pillow read, turning its zoo of exceptions into one `JobError`."""
    try:
        with warnings.catch_warnings():
            # above the limit Pillow warns; darkroom's own check refuses it just after
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return read()
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"{kind} image is too large to decode safely: {exc}") from None
    except MemoryError:
        raise
    except InputInvalid:
        raise
    # Pillow's plugins raise OSError, SyntaxError, struct.error, ValueError, ...
    except Exception as exc:
        raise InputInvalid(f"truncated or corrupt {kind}: {exc}") from None


def _frame_count(image: Image.Image, kind: str) -> int:
    if kind not in ANIMATED and kind not in PAGED:
        return 1  # JPEG (an MPO's further frames), HEIF collections: the primary image
    return max(1, int(getattr(image, "n_frames", 1)))


def _frames(image: Image.Image, count: int, kind: str) -> tuple[list[Frame], list[int]]:
    """Every frame in working form, and how long each shows (ms; Pillow sets it on load)."""
    frames: list[Frame] = []
    durations = []
    for index in range(count):
        _guarded(lambda i=index: _load_frame(image, i), kind)  # type: ignore[misc]
        frames.append(_normalized(image, kind))
        durations.append(int(image.info.get("duration") or DEFAULT_DURATION_MS))
    return frames, durations


def _load_frame(image: Image.Image, index: int) -> None:
    image.seek(index)
    image.load()


def _normalized(image: Image.Image, kind: str) -> Image.Image:
    icc = image.info.get("icc_profile")
    try:
        upright = ImageOps.exif_transpose(image)  # always a new image
    except Exception as exc:
        raise InputInvalid(f"corrupt EXIF data in {kind}: {exc}") from None
    if icc:
        upright = to_srgb(upright, icc)
    working = working_mode(upright)
    if working is upright:
        working = working.copy()
    working.info.clear()  # metadata travels in `Picture.metadata`, not on the pixels
    return working


def to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Apply an embedded colour profile, so Display P3 or Adobe RGB pixels become sRGB."""
    if image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in (ImageCms.getProfileDescription(profile) or "").lower():
            return image  # already sRGB: the transform would be a costly no-op
        mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, profile, _SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        # A broken profile cannot be applied; viewers show such pixels as they are.
        return image
    return converted if converted is not None else image


def working_mode(image: Image.Image) -> Image.Image:
    """`image` in 'RGB', 'RGBA' or 'L' (see the module docstring); itself if already so."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in ("1",):
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        return _grey_8bit(image)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        if _has_transparency(rgba):
            return rgba
        return image.convert("L") if mode in ("LA", "La") else rgba.convert("RGB")
    return image.convert("RGB")


def _grey_8bit(image: Image.Image) -> Image.Image:
    if image.mode == "F":
        return image.convert("L")
    wide = image if image.mode == "I" else image.convert("I")
    # 16-bit samples: keep the top 8 bits instead of clipping everything above 255.
    return wide.point(lambda value: value * (1 / 256)).convert("L")


def _has_transparency(rgba: Image.Image) -> bool:
    low = rgba.getchannel("A").getextrema()[0]
    return isinstance(low, int) and low < 255


def _same_mode(frames: list[Frame]) -> list[Frame]:
    """Frames of one animation in one mode: RGBA for all if any frame is transparent."""
    modes = {frame.mode for frame in frames}
    if len(modes) == 1 or isinstance(frames[0], DeepImage):
        return frames
    target = "RGBA" if "RGBA" in modes else "RGB"
    return [f.convert(target) if isinstance(f, Image.Image) else f for f in frames]
