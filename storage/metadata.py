"""The metadata an output carries: EXIF, XMP, dpi and the colour profile of its pixels.

Read once from the input (`read_metadata`), carried beside the pixels through the
recipe, and written by the encoder in each format's own way (`save_options`). Studios
need copyright, capture date, camera and dpi kept; `output.metadata: strip` drops all
of it (GPS position included) except the colour profile the pixels need.

- EXIF: kept with Orientation reset to 1 (the pixels were turned upright on decode);
  a TIFF's structural tags (strip offsets, sample format...) are not EXIF and are left.
- IPTC: Pillow cannot write the IPTC block, so its copyright notice (2:116) is copied
  into EXIF Copyright when EXIF has none; XMP (which holds dc:rights) is kept whole.
- ICC: the profile the output's pixels are in. 8-bit inputs are converted to sRGB on
  decode and get the sRGB profile when they came with one; 16-bit inputs keep theirs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageCms, IptcImagePlugin, PngImagePlugin

ORIENTATION = 0x0112
COPYRIGHT = 0x8298
# TIFF tags that describe the file's layout, not the picture: never copied as EXIF.
TIFF_STRUCTURE = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 282, 283}
    | {284, 296, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 513, 514, 530, 531, 532}
    | {700, 33723, 34377, 34675, 37724}  # XMP, IPTC, Photoshop, ICC: carried on their own
)
# JPEG carries EXIF and XMP in one APP1 segment each: at most 65533 bytes.
JPEG_SEGMENT_MAX = 65_000
# EXIF IFD0 text tags a TIFF carries as its own tags: description, make, model,
# software, date/time, artist, copyright.
TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)
SRGB_ICC: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@dataclass(frozen=True)
class Metadata:
    """What is written beside the pixels; every field None when absent.

    exif: a TIFF-structured EXIF block (as `Image.Exif.tobytes()`), Orientation 1.
    xmp: the XMP packet, UTF-8 bytes.
    icc: the ICC profile the pixels are encoded in.
    dpi: (horizontal, vertical) dots per inch.
    """

    exif: bytes | None = None
    xmp: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()
    """What was read but will not be written, and why (goes into the job's result)."""

    def stripped(self) -> Metadata:
        """Only the colour profile: what `output.metadata: strip` keeps."""
        return Metadata(icc=self.icc, notes=self.notes)

    def with_icc(self, icc: bytes | None) -> Metadata:
        return replace(self, icc=icc)


def read_metadata(image: Image.Image) -> Metadata:
    """The metadata of an opened (not yet transposed) image; a broken block is dropped.

    XMP over 64 KB is not kept: that is editing history (Photoshop's DocumentAncestors
    lists run to megabytes), it does not fit a JPEG's segment, and it would outweigh
    the picture in a WebP; a note says it was dropped.
    """
    xmp = _xmp(image)
    notes: tuple[str, ...] = ()
    if xmp is not None and len(xmp) > JPEG_SEGMENT_MAX:
        notes = (f"XMP metadata of {len(xmp) / 1e6:.1f} MB dropped (over 64 KB)",)
        xmp = None
    return Metadata(
        exif=_exif(image),
        xmp=xmp,
        icc=image.info.get("icc_profile") or None,
        dpi=_dpi(image),
        notes=notes,
    )


def _exif(image: Image.Image) -> bytes | None:
    try:
        exif = Image.Exif()  # a copy: the image's own still turns the pixels upright
        exif.load(image.getexif().tobytes())
        for tag in [t for t in exif if t in TIFF_STRUCTURE]:
            del exif[tag]
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        notice = _iptc_copyright(image)
        if notice and COPYRIGHT not in exif:
            exif[COPYRIGHT] = notice
        for ifd in (0x8769, 0x8825):  # load the Exif and GPS sub-IFDs so they are written
            if ifd in exif:
                exif.get_ifd(ifd)
        return exif.tobytes() if len(exif) else None
    except Exception:  # a corrupt EXIF block: the pixels are still good
        return None


def _iptc_copyright(image: Image.Image) -> str | None:
    if image.format not in ("JPEG", "MPO", "TIFF"):
        return None
    try:
        info: Any = IptcImagePlugin.getiptcinfo(image)  # type: ignore[arg-type]
    except Exception:
        return None
    value = (info or {}).get((2, 116))
    if isinstance(value, list):
        value = value[0] if value else None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else None


def _xmp(image: Image.Image) -> bytes | None:
    raw = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if raw is None and image.format == "TIFF":
        raw = getattr(image, "tag_v2", {}).get(700)
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return bytes(raw) if isinstance(raw, bytes | bytearray) and raw else None


def _dpi(image: Image.Image) -> tuple[float, float] | None:
    dpi = image.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    return (x, y) if x > 1 and y > 1 else None  # 1x1: "no unit", a placeholder


def save_options(meta: Metadata, fmt: str) -> dict[str, Any]:
    """Pillow `save()` keywords that write `meta` into format `fmt` ('jpeg', 'png', ...)."""
    options: dict[str, Any] = {}
    if meta.icc:
        options["icc_profile"] = meta.icc
    if meta.exif and fmt == "tiff":
        options["tiffinfo"] = exif_text(meta.exif)  # TIFF tags, not an EXIF block
    elif meta.exif and (fmt != "jpeg" or len(meta.exif) <= JPEG_SEGMENT_MAX):
        options["exif"] = meta.exif
    if meta.dpi and fmt in ("jpeg", "png", "tiff"):
        options["dpi"] = meta.dpi
    if meta.xmp:
        if fmt == "png":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"), zip=True)
            options["pnginfo"] = info
        elif fmt in ("webp", "tiff") or len(meta.xmp) <= JPEG_SEGMENT_MAX:
            options["xmp"] = meta.xmp
    return options


def exif_text(exif: bytes | None) -> dict[int, str]:
    """The text tags of an EXIF block that TIFF has as baseline tags, by tag number."""
    if not exif:
        return {}
    parsed = Image.Exif()
    parsed.load(exif)
    return {tag: str(parsed[tag]) for tag in TIFF_TEXT_TAGS if isinstance(parsed.get(tag), str)}


def srgb_tagged(meta: Metadata) -> Metadata:
    """`meta` for pixels converted to sRGB: the sRGB profile if the input had one."""
    return meta.with_icc(SRGB_ICC if meta.icc else None)


def exif_of(data: bytes) -> Image.Exif:
    """The EXIF of encoded image bytes (for checks and tests)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif()
