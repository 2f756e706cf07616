"""What a file is, from its first bytes; an image's size from Pillow's header reading.

Nothing here decodes pixels or trusts a file name: a text file named `.png` is a text
file. The magic-number table only names what is *not* a supported image, so the user
gets "this is a PDF document", not "cannot identify image file". Which image format a
file is, and its size, come from Pillow itself: `Image.open` reads the header alone
(pixels are decoded only by `load()`), so a 30000x30000 bomb is refused before a single
row is allocated, and every format Pillow (plus `pillow-heif`) reads is judged the way
the decoder will judge it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

Size = tuple[int, int]

# Pillow format names darkroom decodes ("HEIF" needs `pillow-heif`, registered in
# `storage.formats`). An MPO (phones' stereo or depth pairs) is a JPEG with extra frames
# after the first: it is reported, and decoded, as the JPEG it starts with.
SUPPORTED = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "AVIF", "HEIF")

# (offset, magic, what it is): only for the clear messages about what a file is instead.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "PDF document"),
    (0, b"PK\x03\x04", "ZIP archive"),
    (0, b"\x1f\x8b", "gzip archive"),
    (0, b"8BPS", "Photoshop document"),
    (0, b"\x00\x00\x01\x00", "Windows icon"),
    (0, b"\xff\x0a", "JPEG XL image"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (0, b"\x7fELF", "executable"),
    (4, b"ftyp", "MP4/QuickTime video"),  # after Pillow: AVIF and HEIC are ftyp files too
)
FTYP_BRANDS = {  # ISO base media files that are images, by their major brand
    b"heic": "HEIF",
    b"heix": "HEIF",
    b"hevc": "HEIF",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}
UNKNOWN = "unknown binary data"


@dataclass(frozen=True)
class Sniffed:
    """What the bytes are: a supported format (Pillow's name) or a description."""

    kind: str
    size: Size | None = None  # (width, height) from the header; None if not reached

    @property
    def supported(self) -> bool:
        return self.kind in SUPPORTED


def sniff(data: bytes) -> Sniffed:
    """Identify `data` by content and, for supported images, read its size from the header.

    Args:
        data: the whole file, or at least its first few KB (the header).
    Returns:
        `Sniffed(kind, size)`: `kind` is a Pillow format name from `SUPPORTED`, or a
        description ("text file", "PDF document", `UNKNOWN`); `size` is (width, height)
        in pixels for supported images whose header Pillow could read, else None.
    """
    from storage.formats import register_decoders

    register_decoders()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=openers()) as image:
                kind = "JPEG" if image.format == "MPO" else str(image.format)
                return Sniffed(kind, image.size)
    except Image.DecompressionBombError:
        kind = image_kind(data) or UNKNOWN
        return Sniffed(kind, _size_past_bomb_check(data, kind))
    except Exception:  # not an image Pillow reads: say what it is instead
        return Sniffed(image_kind(data) or identify_other(data))


def _size_past_bomb_check(data: bytes, kind: str) -> Size | None:
    """The size a bomb's header claims, read by the format's own plugin (which reads the
    header only), so the refusal can say "30000x30000" rather than "too large"."""
    try:
        factory = Image.OPEN[kind][0]
        return factory(io.BytesIO(data), "").size  # type: ignore[no-any-return]
    except Exception:
        return None


def openers() -> list[str]:
    """The `formats=` list for `Image.open`: supported formats with a registered opener."""
    Image.init()
    return [name for name in SUPPORTED if name in Image.OPEN]


def image_kind(data: bytes) -> str | None:
    """A supported format named by its magic number alone (no Pillow): for quick scans of
    many files, and when Pillow could not read a header (truncated files, bombs), where
    the decoder then gives the precise error. Formats without a fixed magic number
    (BMP's is two letters) are left to `sniff`."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return FTYP_BRANDS.get(data[8:12])
    return None


def identify(data: bytes) -> str:
    """A supported Pillow format name, or what else the bytes look like ('text file')."""
    return sniff(data).kind


def identify_other(data: bytes) -> str:
    """What bytes that are no supported image are: a known file type, text, or unknown."""
    for offset, magic, kind in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind
    return _describe_text(data)


def _describe_text(data: bytes) -> str:
    head = data[:4096]
    text = _as_text(head)
    if text is None:
        return UNKNOWN
    stripped = text.lstrip().lower()
    if stripped.startswith("<") and "<svg" in stripped:
        return "SVG drawing"
    if stripped.startswith(("<!doctype html", "<html")):
        return "HTML page"
    if stripped.startswith("<"):
        return "XML file"
    return "text file"


def _as_text(head: bytes) -> str | None:
    for cut in range(4):  # a multi-byte character may be cut at the sample's end
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    printable = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
    return text if text and printable / len(text) > 0.95 else None
