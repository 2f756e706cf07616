"""Deterministic encoding of outputs: WebP, JPEG, PNG or TIFF, 8 or 16 bits, with metadata.

The same pixels and spec give the same bytes. 16-bit images (`DeepImage`) are written
at 16 bits to PNG (OpenCV, then darkroom adds the metadata chunks OpenCV cannot write)
and TIFF (`tifffile`), unless the spec asks for 8; JPEG and WebP get them dithered to
8 bits. Several frames go into one file where the format holds them (animated WebP,
APNG, multi-page TIFF), else into one file each.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import tifffile
from PIL import Image

from jobs.errors import InputInvalid
from storage.decode import Frame, working_mode
from storage.deep import DeepImage
from storage.metadata import Metadata, exif_text, save_options

if TYPE_CHECKING:
    from jobs.schema import OutputSpec

CONTENT_TYPES: dict[str, str] = {  # lower-case format name (as in OutputSpec) -> MIME
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
}
PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF"}
MULTI_FRAME = frozenset({"webp", "png", "tiff"})  # formats one file of many frames fits


def encode_image(
    image: Frame, spec: OutputSpec, *, fast: bool = False, metadata: Metadata | None = None
) -> bytes:
    """`image` as one file per `spec`; the same pixels give the same bytes.

    Args:
        image: PIL 'RGB', 'RGBA' or 'L' (8-bit), or a `DeepImage` (16-bit).
        spec: format, quality, lossless, bit_depth (None: as the image) and metadata mode.
        fast: trade size for time (previews): at 1 MP, WebP method 0 takes 17 ms
            against 66 ms, PNG level 1 a fraction of level 6's 357 ms.
        metadata: what to write beside the pixels; None writes nothing.
    Raises:
        InputInvalid: lossless JPEG asked for.
    """
    return encode_frames([image], spec, fast=fast, metadata=metadata)[0]


def encode_frames(
    frames: Sequence[Frame],
    spec: OutputSpec,
    *,
    fast: bool = False,
    metadata: Metadata | None = None,
    durations: Sequence[int] = (),
    loop: int | None = None,
) -> list[bytes]:
    """`frames` as files: one holding them all (WebP, PNG, TIFF), or one per frame (JPEG).

    `durations` (ms per frame) and `loop` make an animation; without them several
    frames are pages (TIFF) or separate files. JPEG has no alpha: transparent areas are
    laid onto white. JPEG cannot be lossless: asking is an `InputInvalid`.
    """
    if spec.lossless and spec.format == "jpeg":
        raise InputInvalid("JPEG cannot be lossless: ask for webp or png output")
    meta = _chosen(metadata, spec)
    if _keeps_16(frames[0], spec):
        deep = [f for f in frames if isinstance(f, DeepImage)]
        if spec.format == "tiff":
            return [_tiff16(deep, meta, fast)]
        return [_png16(f, meta, fast) for f in deep]
    pil = [_for_format(_as_8bit(f), spec.format) for f in frames]
    together = len(pil) > 1 and spec.format in MULTI_FRAME
    if together and spec.format != "tiff" and not durations:
        together = False  # pages of a document as WebP or PNG: one file each
    groups = [pil] if together else [[frame] for frame in pil]
    return [_pil_save(g, spec, fast, meta, durations, loop) for g in groups]


def _chosen(metadata: Metadata | None, spec: OutputSpec) -> Metadata:
    if metadata is None:
        return Metadata()
    return metadata.stripped() if getattr(spec, "metadata", None) == "strip" else metadata


def _keeps_16(frame: Frame, spec: OutputSpec) -> bool:
    depth = getattr(spec, "bit_depth", None)
    return isinstance(frame, DeepImage) and spec.format in ("png", "tiff") and depth != 8


def _as_8bit(frame: Frame) -> Image.Image:
    if isinstance(frame, DeepImage):
        return frame.to_8bit(dither=True)
    return working_mode(frame)


def _for_format(image: Image.Image, fmt: str) -> Image.Image:
    if fmt == "jpeg" and image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        return white
    if fmt == "webp" and image.mode == "L":
        return image.convert("RGB")  # WebP has no greyscale mode
    if image.info:
        image = image.copy()
        image.info.clear()  # an ICC profile or EXIF left in info would be written out
    return image


def _pil_save(
    frames: list[Image.Image],
    spec: OutputSpec,
    fast: bool,
    meta: Metadata,
    durations: Sequence[int],
    loop: int | None,
) -> bytes:
    options = {**_format_options(spec, fast), **save_options(meta, spec.format)}
    if len(frames) > 1:
        # fresh copies: Pillow keeps one save's encoder settings on the image object and
        # a multi-frame TIFF save then hands them to the wrong encoder
        frames = [frame.copy() for frame in frames]
        options.update(save_all=True, append_images=frames[1:])
        if durations:
            options.update(duration=list(durations), loop=loop or 0)
    buffer = io.BytesIO()
    frames[0].save(buffer, format=PIL_FORMATS[spec.format], **options)
    return buffer.getvalue()


def _format_options(spec: OutputSpec, fast: bool) -> dict[str, Any]:
    if spec.format == "jpeg":
        # 4:4:4 chroma at high quality: 4:2:0 smears colour edges a retoucher will see.
        return {
            "quality": spec.quality,
            "optimize": not fast,
            "subsampling": 0 if spec.quality >= 90 else 2,
        }
    if spec.format == "webp":
        return {"quality": spec.quality, "lossless": spec.lossless, "method": 0 if fast else 4}
    if spec.format == "tiff":
        return {"compression": "tiff_adobe_deflate"}
    return {"compress_level": 1 if fast else 6}


# --- 16-bit writers ------------------------------------------------------------------


def _bgr(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3:
        order = [2, 1, 0, 3] if pixels.shape[2] == 4 else [2, 1, 0]
        return np.ascontiguousarray(pixels[..., order])
    return pixels


def _png16(image: DeepImage, meta: Metadata, fast: bool) -> bytes:
    level = 1 if fast else 6
    ok, encoded = cv2.imencode(".png", _bgr(image.pixels), [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise RuntimeError("OpenCV could not encode a 16-bit PNG")
    return _with_png_chunks(encoded.tobytes(), _png_chunks(meta))


def _png_chunks(meta: Metadata) -> list[tuple[bytes, bytes]]:
    """The PNG chunks (type, data) that carry `meta` (PNG 1.2 and the 2017 eXIf chunk)."""
    chunks = []
    if meta.icc:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.exif:
        chunks.append((b"eXIf", meta.exif.removeprefix(b"Exif\x00\x00")))
    if meta.dpi:
        per_metre = [round(d / 0.0254) for d in meta.dpi]
        chunks.append((b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if meta.xmp:
        chunks.append((b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + meta.xmp))
    return chunks


def _with_png_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """`png` with `chunks` inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    at = 8 + 25
    body = b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in chunks
    )
    return png[:at] + body + png[at:]


def _tiff16(frames: list[DeepImage], meta: Metadata, fast: bool) -> bytes:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        for frame in frames:
            tif.write(frame.pixels, **_tiff_options(frame, meta, fast))
    return buffer.getvalue()


def _tiff_options(frame: DeepImage, meta: Metadata, fast: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "photometric": "minisblack" if frame.mode == "L" else "rgb",
        "compression": "zlib",
        "compressionargs": {"level": 1 if fast else 6},
        "metadata": None,  # no tifffile JSON description
    }
    if frame.mode == "RGBA":
        options["extrasamples"] = ["unassalpha"]
    if meta.icc:
        options["iccprofile"] = meta.icc
    if meta.dpi:
        options.update(resolution=meta.dpi, resolutionunit="INCH")
    extratags: list[tuple[int, str, int, Any, bool]] = []
    if meta.xmp:
        extratags.append((700, "B", len(meta.xmp), meta.xmp, True))
    for tag, value in exif_text(meta.exif).items():
        if tag == 305:  # Software: tifffile writes its own
            continue
        extratags.append((tag, "s", 0, value, True))
    options["extratags"] = extratags
    return options
