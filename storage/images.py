"""Image bytes in and out: checked decoding of inputs, deterministic encoding of outputs.

`decode_image` is a numbered recipe that refuses bad input before paying for it:
the format is judged by content, the size by the header, and only then are pixels
decoded. What comes out is upright, metadata-free and in one of three working modes:

- 'RGB' for colour images (CMYK, YCbCr, LAB and palette images are converted; an
  embedded ICC profile is applied, so the pixels are sRGB);
- 'RGBA' only when the alpha channel carries information (some pixel below 255); a
  fully opaque alpha channel is dropped;
- 'L' for greyscale ('1' and 16-bit greyscale become 8-bit 'L'; 'L' stays 'L', so
  scanned archives are not tripled in size).

Animated or multi-page inputs give their first frame.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image, ImageCms, ImageOps

from jobs.errors import InputInvalid, InputTooLarge
from storage.sniff import SUPPORTED, UNKNOWN, sniff

if TYPE_CHECKING:
    from jobs.schema import OutputSpec
    from jobs.settings import Settings

ALLOWED_FORMATS = set(SUPPORTED)  # Pillow names; detected by content, never extension
CONTENT_TYPES: dict[str, str] = {  # lower-case format name (as in OutputSpec) -> MIME
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
}
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def decode_image(data: bytes, settings: Settings, *, name: str | None = None) -> Image.Image:
    """A loaded, upright, metadata-free image from `data`, or a `JobError` saying why not.

    `name` (a file name, if known) only makes messages clearer ("text file named
    a.png is not an image"); it never decides the format.
    """
    # 1. what the bytes are, by content
    if not data:
        raise InputInvalid(_called("empty file", name))
    sniffed = sniff(data)
    if not sniffed.supported:
        raise InputInvalid(_unsupported(sniffed.kind, name, data))
    # 2. the size the header claims, before any pixel is decoded
    if sniffed.size is not None:
        check_size(*sniffed.size, settings)
    # 3. Pillow's own reading of the header, limited to the format we detected
    image = _open(data, sniffed.kind)
    check_size(*image.size, settings)
    # 4. the pixels, then the working form
    _load(image, sniffed.kind)
    return _normalized(image, sniffed.kind)


def check_size(width: int, height: int, settings: Settings) -> None:
    """Refuse images over `max_input_pixels` or with a side under `min_input_side`."""
    if width * height > settings.max_input_pixels:
        raise InputTooLarge(
            f"{width}x{height} image has {width * height / 1e6:.1f} megapixels; "
            f"the limit is {settings.max_input_pixels / 1e6:.1f}"
        )
    if min(width, height) < settings.min_input_side:
        raise InputInvalid(
            f"{width}x{height} image is too small; minimum side is {settings.min_input_side} px"
        )


def _called(kind: str, name: str | None) -> str:
    return f"{kind} named {name}" if name else kind


def _unsupported(kind: str, name: str | None, data: bytes) -> str:
    accepted = "JPEG, PNG, WebP, TIFF or BMP"
    if kind.endswith("image") or kind == "SVG drawing":
        return f"{_called(kind, name)} is not a supported format; convert it to {accepted}"
    first = f" (first bytes: {data[:8].hex(' ')})" if kind == UNKNOWN else ""
    return f"{_called(kind, name)} is not an image{first}; expected {accepted}"


def _open(data: bytes, kind: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"{kind} image is too large to decode safely: {exc}") from None
    except MemoryError:
        raise
    # Pillow's plugins raise a zoo of types (OSError, SyntaxError, struct.error, ...).
    except Exception as exc:
        raise InputInvalid(f"truncated or corrupt {kind}: {exc}") from None


def _load(image: Image.Image, kind: str) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"{kind} image is too large to decode safely: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise InputInvalid(f"truncated or corrupt {kind}: {exc}") from None


def _normalized(image: Image.Image, kind: str) -> Image.Image:
    icc = image.info.get("icc_profile")
    try:
        upright = ImageOps.exif_transpose(image)  # always a new image
    except Exception as exc:
        raise InputInvalid(f"corrupt EXIF data in {kind}: {exc}") from None
    if icc:
        upright = _to_srgb(upright, icc)
    working = working_mode(upright)
    if working is upright:
        working = working.copy()
    working.info.clear()  # EXIF, ICC, XMP, comments: nothing rides along to the output
    return working


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
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


def encode_image(image: Image.Image, spec: OutputSpec, *, fast: bool = False) -> bytes:
    """`image` as WebP, JPEG or PNG per `spec`; the same pixels give the same bytes.

    JPEG has no alpha: transparent areas are laid onto white. JPEG cannot be lossless;
    asking for it is an `InputInvalid`, not a silent lossy write. `fast` trades size for
    time (previews): at 1 MP, WebP method 0 takes 17 ms against 66 ms, PNG level 1 a
    fraction of level 6's 357 ms.
    """
    if spec.lossless and spec.format == "jpeg":
        raise InputInvalid("JPEG cannot be lossless: ask for webp or png output")
    prepared = _for_format(working_mode(image), spec.format)
    if prepared.info:
        prepared = prepared.copy()
        prepared.info.clear()  # an ICC profile or EXIF left in info would be written out
    buffer = io.BytesIO()
    prepared.save(buffer, format=PIL_FORMATS[spec.format], **_save_options(spec, fast))
    return buffer.getvalue()


def _for_format(image: Image.Image, fmt: str) -> Image.Image:
    if fmt == "jpeg" and image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        return white
    if fmt == "webp" and image.mode == "L":
        return image.convert("RGB")  # WebP has no greyscale mode
    return image


def _save_options(spec: OutputSpec, fast: bool) -> dict[str, object]:
    if spec.format == "jpeg":
        # 4:4:4 chroma at high quality: 4:2:0 smears colour edges a retoucher will see.
        return {
            "quality": spec.quality,
            "optimize": not fast,
            "subsampling": 0 if spec.quality >= 90 else 2,
        }
    if spec.format == "webp":
        return {"quality": spec.quality, "lossless": spec.lossless, "method": 0 if fast else 4}
    return {"compress_level": 1 if fast else 6}
