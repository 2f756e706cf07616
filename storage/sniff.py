"""What a file is, from its first bytes, and an image's size from its header alone.

Nothing here decodes pixels or trusts a file name: a text file named `.png` is a text
file. Header parsing reads a few dozen bytes (a JPEG's markers up to its frame header),
so a 30000x30000 bomb is refused before a single row is allocated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

Size = tuple[int, int]

SUPPORTED = ("JPEG", "PNG", "WEBP", "TIFF", "BMP")

# (offset, magic, what it is); supported formats carry their Pillow name.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "TIFF"),  # BigTIFF
    (0, b"MM\x00+", "TIFF"),
    (0, b"GIF87a", "GIF image"),
    (0, b"GIF89a", "GIF image"),
    (0, b"%PDF", "PDF document"),
    (0, b"PK\x03\x04", "ZIP archive"),
    (0, b"\x1f\x8b", "gzip archive"),
    (0, b"8BPS", "Photoshop document"),
    (0, b"\x00\x00\x01\x00", "Windows icon"),
    (0, b"\xff\x0a", "JPEG XL image"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (0, b"\x7fELF", "executable"),
)
FTYP_BRANDS = {
    b"heic": "HEIC image",
    b"heix": "HEIC image",
    b"hevc": "HEIC image",
    b"mif1": "HEIF image",
    b"msf1": "HEIF image",
    b"avif": "AVIF image",
    b"avis": "AVIF image",
}
UNKNOWN = "unknown binary data"
BMP_DIB_SIZES = {12, 40, 52, 56, 64, 108, 124}
JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class Sniffed:
    """What the bytes are: a supported format (Pillow's name) or a description."""

    kind: str
    size: Size | None = None  # (width, height) from the header; None if not reached

    @property
    def supported(self) -> bool:
        return self.kind in SUPPORTED


def sniff(data: bytes) -> Sniffed:
    """Identify `data` by content and, for supported images, read its size."""
    kind = identify(data)
    reader = HEADER_READERS.get(kind)
    return Sniffed(kind, reader(data) if reader else None)


def identify(data: bytes) -> str:
    """'JPEG', 'PNG', 'WEBP', 'TIFF', 'BMP', or what else it looks like ('text file')."""
    for offset, magic, kind in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and _u32le(data, 14) in BMP_DIB_SIZES:
        return "BMP"
    if data[4:8] == b"ftyp":
        return FTYP_BRANDS.get(data[8:12], "MP4/QuickTime video")
    return _describe_other(data)


def _describe_other(data: bytes) -> str:
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


def _u16be(data: bytes, at: int) -> int | None:
    return struct.unpack_from(">H", data, at)[0] if len(data) >= at + 2 else None


def _u32le(data: bytes, at: int) -> int | None:
    return struct.unpack_from("<I", data, at)[0] if len(data) >= at + 4 else None


def png_size(data: bytes) -> Size | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def jpeg_size(data: bytes) -> Size | None:
    """Walk the marker segments to the frame header (SOFn), which holds the size."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # standalone markers: no length
            at += 2
            continue
        if marker in JPEG_FRAME_MARKERS:
            if len(data) < at + 9:
                return None
            height, width = struct.unpack_from(">HH", data, at + 5)
            return width, height
        if marker == 0xDA:  # scan data before any frame header: not a valid JPEG
            return None
        length = _u16be(data, at + 2)
        if length is None or length < 2:
            return None
        at += 2 + length
    return None


def webp_size(data: bytes) -> Size | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def bmp_size(data: bytes) -> Size | None:
    if _u32le(data, 14) == 12 and len(data) >= 22:
        width, height = struct.unpack_from("<HH", data, 18)
        return width, height
    if len(data) < 26:
        return None
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height means rows stored top-down


def tiff_size(data: bytes) -> Size | None:
    """ImageWidth (256) and ImageLength (257) from the first IFD of a classic TIFF."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8 or data[2:4] not in (b"*\x00", b"\x00*"):
        return None  # BigTIFF and truncated headers: Pillow's reading decides
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if len(data) < ifd + 2:
        return None
    (count,) = struct.unpack_from(order + "H", data, ifd)
    found: dict[int, int] = {}
    for index in range(min(count, 512)):
        at = ifd + 2 + 12 * index
        if len(data) < at + 12:
            break
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack_from(fmt, data, at + 8)[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


HEADER_READERS = {
    "PNG": png_size,
    "JPEG": jpeg_size,
    "WEBP": webp_size,
    "BMP": bmp_size,
    "TIFF": tiff_size,
}
