"""What comes back from an input is what was handed in: depth, frames, formats, metadata.

The field cases in `tests/cases/images/` (copied from the project's shared cases) are
decoded, run through classic ops and encoded, and each output is read back with
Pillow (or OpenCV for 16-bit colour, which Pillow reads as 8-bit).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from jobs.errors import InputInvalid, InputTooLarge
from jobs.ops import get_op
from jobs.schema import OutputSpec
from jobs.settings import Settings
from pipelines.base import OpContext
from pipelines.classic import OPS
from storage.decode import decode_picture
from storage.deep import DeepImage
from storage.encode import encode_frames, encode_image
from storage.metadata import Metadata
from storage.sniff import sniff

CASES = Path(__file__).parent.parent / "cases" / "images"
SETTINGS = Settings()


def case(name: str) -> bytes:
    return (CASES / name).read_bytes()


def levels_per_channel(pixels: np.ndarray) -> list[int]:
    channels = pixels[..., None] if pixels.ndim == 2 else pixels
    return [len(np.unique(channels[..., c])) for c in range(channels.shape[-1])]


def op(name: str, image: object, **params: object) -> object:
    return OPS[name](image, get_op(name).validate(params), OpContext())  # type: ignore[arg-type]


def read16(data: bytes) -> np.ndarray:
    """An encoded file's samples at full depth, RGB order (Pillow reads 48-bit as 8-bit)."""
    bgr = np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
    return bgr[..., ::-1] if bgr.ndim == 3 else bgr


# --- 01: 16-bit scans ---------------------------------------------------------------


def test_case_01_a_16_bit_scan_keeps_its_levels_through_auto_levels() -> None:
    picture = decode_picture(case("01-16bit-scan-posterized.tif"), SETTINGS)
    (scan,) = picture.frames
    assert isinstance(scan, DeepImage) and scan.mode == "RGB"
    before = levels_per_channel(scan.pixels)

    out = op("auto_levels", scan, clip_percent=0.1)

    assert isinstance(out, DeepImage)
    after = levels_per_channel(out.pixels)
    assert all(a >= 0.9 * b for a, b in zip(after, before, strict=True)), (before, after)
    assert int(out.pixels.max()) > 60000  # and it did stretch: 3200 of 65535 reaches white
    written = read16(encode_image(out, OutputSpec(format="png")))
    assert written.dtype == np.uint16
    assert levels_per_channel(written) == after


@pytest.mark.parametrize("name", ["white_balance", "exposure", "denoise", "restore_faded_color"])
def test_tone_colour_and_denoise_ops_stay_16_bit(name: str) -> None:
    (scan,) = decode_picture(case("01-16bit-scan-posterized.tif"), SETTINGS).frames
    assert isinstance(scan, DeepImage)
    stretched = op("auto_levels", scan)
    assert isinstance(stretched, DeepImage)
    params = {"ev": 0.3} if name == "exposure" else {}

    out = op(name, stretched, **params)

    assert isinstance(out, DeepImage)
    # the levels survive (cut to 8 bits first, the scan's 3000 values made 13 levels)
    before, after = levels_per_channel(stretched.pixels), levels_per_channel(out.pixels)
    assert all(a >= 0.9 * b for a, b in zip(after, before, strict=True)), (before, after)


def test_a_12_bit_grey_png_keeps_its_levels() -> None:
    ramp = (np.linspace(200, 3200, 64 * 48) // 4 * 4).astype(np.uint16).reshape(48, 64)
    _, png = cv2.imencode(".png", ramp)
    (grey,) = decode_picture(png.tobytes(), SETTINGS).frames
    assert isinstance(grey, DeepImage) and grey.mode == "L"

    out = op("auto_levels", grey, clip_percent=0.1)

    assert isinstance(out, DeepImage)
    assert levels_per_channel(out.pixels)[0] >= 0.9 * levels_per_channel(ramp)[0]


def test_16_bit_outputs_png_tiff_16_jpeg_webp_dithered_and_8_when_asked() -> None:
    (scan,) = decode_picture(case("01-16bit-scan-posterized.tif"), SETTINGS).frames
    out = op("auto_levels", scan)

    tiff = read16(encode_image(out, OutputSpec(format="tiff")))
    png8 = Image.open(io.BytesIO(encode_image(out, OutputSpec(format="png", bit_depth=8))))
    jpeg = Image.open(io.BytesIO(encode_image(out, OutputSpec(format="jpeg", quality=95))))

    assert tiff.dtype == np.uint16 and tiff.shape == (200, 300, 3)
    assert png8.mode == "RGB"
    # a stretched 13-level scan would give 13 levels; dithering gives every 8-bit level
    assert min(levels_per_channel(np.asarray(jpeg))) > 200
    assert min(levels_per_channel(np.asarray(png8))) > 200


# --- 02: large XMP ------------------------------------------------------------------


def test_case_02_a_png_with_1_7_mb_of_xmp_decodes_and_says_the_xmp_was_dropped() -> None:
    picture = decode_picture(case("02-huge-xmp-png-rejected.png"), SETTINGS)

    assert picture.frames[0].size == (150, 100)
    assert picture.metadata.xmp is None
    assert "XMP metadata of 1.7 MB dropped" in picture.metadata.notes[0]


def test_text_chunks_over_the_input_byte_limit_are_still_refused() -> None:
    small = Settings(max_input_bytes=100_000)  # below the case's 1.7 MB of XMP

    with pytest.raises(InputInvalid, match="truncated or corrupt PNG"):
        decode_picture(case("02-huge-xmp-png-rejected.png"), small)


# --- 04, 07, 08: pages and frames ---------------------------------------------------


def test_case_04_every_page_of_a_multipage_tiff_is_decoded() -> None:
    picture = decode_picture(case("04-multipage-tiff-pages-dropped.tif"), SETTINGS)

    assert picture.pages and not picture.animated
    assert [f.size for f in picture.frames] == [(448, 172), (256, 256), (256, 256)]


@pytest.mark.parametrize(
    ("name", "durations"),
    [("07-animated-webp-first-frame.webp", [200] * 3), ("08-gif-refused.gif", [200] * 3)],
)
def test_cases_07_08_animations_give_every_frame_and_their_timing(
    name: str, durations: list[int]
) -> None:
    picture = decode_picture(case(name), SETTINGS)

    assert picture.animated and picture.durations == durations and picture.loop == 0
    assert len({np.asarray(f).tobytes() for f in picture.frames}) == 3  # three pictures

    (webp,) = encode_frames(
        picture.frames,
        OutputSpec(format="webp"),
        durations=picture.durations,
        loop=picture.loop,
    )
    back = Image.open(io.BytesIO(webp))
    back.load()  # Pillow reads a WebP frame's duration when it decodes it
    assert back.n_frames == 3  # type: ignore[attr-defined]
    assert back.info["duration"] == durations[0]


def test_an_apng_keeps_its_frames() -> None:
    frames = [Image.new("RGB", (40, 30), (i * 80, 10, 200)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=120, loop=0)

    picture = decode_picture(buffer.getvalue(), SETTINGS)

    assert len(picture.frames) == 3 and picture.durations == [120] * 3


# --- 03, formats ----------------------------------------------------------------------


def test_case_03_an_mpo_gives_its_primary_image() -> None:
    picture = decode_picture(case("03-folder-scan-skips.MPO"), SETTINGS)

    assert picture.format == "JPEG" and len(picture.frames) == 1
    assert picture.frames[0].size == (320, 320)


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_avif_and_heic_inputs_decode(fmt: str) -> None:
    pytest.importorskip("pillow_heif")
    from storage.formats import register_decoders

    register_decoders()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, fmt, quality=90)

    (image,) = decode_picture(buffer.getvalue(), SETTINGS).frames

    assert isinstance(image, Image.Image) and image.size == (64, 48)
    assert np.allclose(np.asarray(image).reshape(-1, 3).mean(axis=0), (200, 30, 30), atol=8)


def test_tiff_is_an_output_format() -> None:
    image = Image.new("RGB", (32, 24), (10, 120, 230))

    back = Image.open(io.BytesIO(encode_image(image, OutputSpec(format="tiff"))))

    assert back.format == "TIFF" and back.getpixel((5, 5)) == (10, 120, 230)
    assert OutputSpec(format="tiff").extension == "tif"


# --- 10: metadata -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_case_10_copyright_date_and_dpi_are_kept_orientation_reset(fmt: str) -> None:
    picture = decode_picture(case("10-metadata-stripped.jpg"), SETTINGS)
    (image,) = picture.frames
    assert image.size == (300, 200)  # orientation 6 applied to the 200x300 stored pixels

    out = Image.open(
        io.BytesIO(encode_image(image, OutputSpec(format=fmt), metadata=picture.metadata))
    )

    exif = out.getexif()
    assert exif.get(0x8298) == "(c) Test Studio"
    assert exif.get(0x0132) == "2024:05:01 10:00:00"
    assert exif.get(0x0112) in (None, 1)  # not rotated a second time by viewers
    if fmt != "webp":  # WebP has no dpi field
        assert tuple(round(float(v)) for v in out.info["dpi"]) == (300, 300)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_strip_removes_exif_gps_and_dpi(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x8298] = "(c) Test Studio"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPS latitude
    source = io.BytesIO()
    Image.new("RGB", (40, 30), "gray").save(source, "JPEG", exif=exif, dpi=(300, 300))
    picture = decode_picture(source.getvalue(), SETTINGS)
    assert picture.metadata.exif is not None and b"Test Studio" in picture.metadata.exif

    spec = OutputSpec(format=fmt, metadata="strip")
    data = encode_image(picture.frames[0], spec, metadata=picture.metadata)

    out = Image.open(io.BytesIO(data))
    assert 0x8298 not in out.getexif() and not out.getexif().get_ifd(0x8825)
    assert b"Test Studio" not in data
    assert "dpi" not in out.info or tuple(round(v) for v in out.info["dpi"]) != (300, 300)


def test_a_photo_with_a_colour_profile_comes_out_tagged_srgb() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 160, 40)).save(source, "PNG", icc_profile=srgb)
    picture = decode_picture(source.getvalue(), SETTINGS)

    data = encode_image(picture.frames[0], OutputSpec(format="jpeg"), metadata=picture.metadata)

    profile = Image.open(io.BytesIO(data)).info.get("icc_profile")
    assert profile and "sRGB" in ImageCms.getProfileDescription(
        ImageCms.ImageCmsProfile(io.BytesIO(profile))
    )


def test_16_bit_outputs_keep_metadata_too() -> None:
    scan = np.full((24, 32, 3), 4000, np.uint16)
    _, png = cv2.imencode(".png", scan)
    exif = Image.Exif()
    exif[0x8298] = "(c) Archive"
    meta = Metadata(exif=exif.tobytes(), dpi=(600.0, 600.0), icc=None)
    (deep,) = decode_picture(png.tobytes(), SETTINGS).frames

    for fmt in ("png", "tiff"):
        out = Image.open(io.BytesIO(encode_image(deep, OutputSpec(format=fmt), metadata=meta)))
        assert out.getexif().get(0x8298) == "(c) Archive", fmt
        assert tuple(round(float(v)) for v in out.info["dpi"]) == (600, 600), fmt


# --- limits ---------------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


def test_the_pixel_limit_setting_is_the_one_in_force_not_pillows_default() -> None:
    # 196 MP: over twice Pillow's default limit (89 MP), where Pillow itself refuses.
    bomb = _png_claiming(14_000, 14_000)

    with pytest.raises(InputTooLarge, match=r"14000x14000 image has 196\.0 megapixels"):
        decode_picture(bomb, SETTINGS)
    roomy = Settings(max_input_pixels=200_000_000)
    # allowed by the setting, so Pillow reads on and finds the pixel data missing
    with pytest.raises(InputInvalid, match="truncated or corrupt PNG"):
        decode_picture(bomb, roomy)
    assert Image.MAX_IMAGE_PIXELS == 200_000_000
    assert sniff(bomb).size == (14_000, 14_000)


def test_all_frames_count_toward_the_pixel_limit() -> None:
    frames = [Image.new("RGB", (100, 100), (i * 60, 0, 0)) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)

    with pytest.raises(InputTooLarge, match="100x100 x 4 frames"):
        decode_picture(buffer.getvalue(), Settings(max_input_pixels=30_000))


def _with_iptc_copyright(jpeg: bytes, notice: bytes) -> bytes:
    """`jpeg` with an APP13 Photoshop/IPTC block holding copyright notice 2:116."""
    record = b"\x1c\x02\x74" + struct.pack(">H", len(notice)) + notice
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(record)) + record
    body = b"Photoshop 3.0\x00" + resource
    app13 = b"\xff\xed" + struct.pack(">H", len(body) + 2) + body
    return jpeg[:2] + app13 + jpeg[2:]


def test_an_iptc_copyright_is_kept_as_exif_copyright() -> None:
    plain = io.BytesIO()
    Image.new("RGB", (40, 30), "gray").save(plain, "JPEG")
    data = _with_iptc_copyright(plain.getvalue(), b"(c) Agency Photo")

    picture = decode_picture(data, SETTINGS)
    out = encode_image(picture.frames[0], OutputSpec(format="png"), metadata=picture.metadata)

    assert Image.open(io.BytesIO(out)).getexif().get(0x8298) == "(c) Agency Photo"


def test_a_16_bit_scan_keeps_its_own_colour_profile() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + b"\0" * 4
    (deep,) = decode_picture(
        cv2.imencode(".png", np.full((8, 8, 3), 900, np.uint16))[1].tobytes(), SETTINGS
    ).frames

    for fmt in ("png", "tiff"):
        data = encode_image(deep, OutputSpec(format=fmt), metadata=Metadata(icc=profile))
        assert Image.open(io.BytesIO(data)).info.get("icc_profile") == profile, fmt
