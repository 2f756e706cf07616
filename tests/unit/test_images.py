"""decode_image refuses bad input with a useful message; encode_image is deterministic."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, get_args

import numpy as np
import pytest
from PIL import Image, ImageCms

from jobs.errors import InputInvalid, InputTooLarge
from jobs.schema import OutputSpec
from jobs.settings import Settings
from storage import CONTENT_TYPES, decode_image, encode_image
from storage.sniff import sniff

SETTINGS = Settings()
RED, BLUE = (220, 20, 20), (20, 20, 220)


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """A noisy gradient: compresses like a photo, so truncation cuts real scan data."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, size[0])[None, :, None]
    y = np.linspace(0, 255, size[1])[:, None, None]
    base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming a size, with a few bytes of pixel data where gigabytes should be."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def mean_colour(image: Image.Image) -> tuple[float, ...]:
    return tuple(np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0))


def test_zero_bytes_is_an_empty_file() -> None:
    with pytest.raises(InputInvalid, match="empty file"):
        decode_image(b"", SETTINGS)


def test_text_named_png_is_judged_by_content_not_name() -> None:
    with pytest.raises(InputInvalid, match=r"text file named notes\.png is not an image"):
        decode_image(b"shopping list:\n- film\n- fixer\n", SETTINGS, name="notes.png")


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00", "truncated or corrupt GIF"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF document is not an image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG drawing"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "truncated or corrupt HEIF"),
        (b"\x00\x01\x02\x03\xfe\xfd\xfc\xfb", "unknown binary data .*00 01 02 03"),
    ],
)
def test_other_files_are_named_for_what_they_are(data: bytes, looks_like: str) -> None:
    with pytest.raises(InputInvalid, match=looks_like):
        decode_image(data, SETTINGS)


def test_truncated_jpeg_is_input_invalid_naming_the_format() -> None:
    data = encoded(photo((256, 256)), "JPEG", quality=95)

    with pytest.raises(InputInvalid, match="truncated or corrupt JPEG"):
        decode_image(data[: len(data) // 2], SETTINGS)


def test_corrupt_png_data_is_input_invalid() -> None:
    data = bytearray(encoded(photo(), "PNG"))
    data[60:80] = b"\x00" * 20  # inside the first IDAT chunk: its CRC no longer matches

    with pytest.raises(InputInvalid, match="truncated or corrupt PNG"):
        decode_image(bytes(data), SETTINGS)


def test_header_claiming_30000_squared_is_refused_before_decoding() -> None:
    # Decoding would first fail as truncated (there is no pixel data): the size check wins.
    with pytest.raises(InputTooLarge, match=r"30000x30000 image has 900\.0 megapixels"):
        decode_image(png_header_only(30000, 30000), SETTINGS)


def test_pixel_limit_comes_from_settings() -> None:
    data = encoded(photo((100, 100)), "WEBP")

    with pytest.raises(InputTooLarge, match="100x100"):
        decode_image(data, Settings(max_input_pixels=9_999))
    assert decode_image(data, Settings(max_input_pixels=10_000)).size == (100, 100)


def test_one_pixel_image_is_too_small() -> None:
    with pytest.raises(InputInvalid, match="1x1 image is too small; minimum side is 8 px"):
        decode_image(encoded(Image.new("RGB", (1, 1)), "PNG"), SETTINGS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
def test_good_images_decode_to_loaded_rgb(fmt: str) -> None:
    source = photo((80, 48))
    image = decode_image(encoded(source, fmt), SETTINGS)

    assert (image.mode, image.size) == ("RGB", (80, 48))
    assert np.allclose(mean_colour(image), mean_colour(source), atol=3)
    assert image.info == {}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
def test_header_size_reader_agrees_with_pillow(fmt: str) -> None:
    assert sniff(encoded(photo((77, 33)), fmt)).size == (77, 33)


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    # Stored 40x20, left half red: orientation 6 means "turn 90 degrees clockwise to view".
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(Image.new("RGB", (20, 20), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6

    image = decode_image(encoded(stored, "JPEG", exif=exif, quality=95), SETTINGS)

    assert image.size == (20, 40)
    assert np.allclose(mean_colour(image.crop((0, 0, 20, 18))), RED, atol=12)
    assert np.allclose(mean_colour(image.crop((0, 22, 20, 40))), BLUE, atol=12)


def test_metadata_is_stripped_and_not_written_back_out() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    data = encoded(photo(), "JPEG", exif=exif, comment=b"gps: 51.5,-0.1")

    image = decode_image(data, SETTINGS)
    out = encode_image(image, OutputSpec(format="jpeg"))

    assert image.info == {}
    assert b"SecretCam" not in out and b"gps" not in out
    assert len(Image.open(io.BytesIO(out)).getexif()) == 0


def test_transparency_is_kept_only_when_it_carries_information() -> None:
    opaque = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    see_through = Image.new("RGBA", (16, 16), (10, 20, 30, 128))

    assert decode_image(encoded(opaque, "PNG"), SETTINGS).mode == "RGB"
    assert decode_image(encoded(see_through, "PNG"), SETTINGS).mode == "RGBA"


def test_greyscale_stays_greyscale_and_16_bit_keeps_its_range() -> None:
    grey16 = Image.new("I;16", (16, 16), 0)
    grey16.putpixel((0, 0), 65535)
    grey16.putpixel((1, 0), 32768)

    image = decode_image(encoded(grey16, "PNG"), SETTINGS)

    assert image.mode == "L"
    assert [image.getpixel((x, 0)) for x in range(3)] == [255, 128, 0]
    assert decode_image(encoded(Image.new("L", (16, 16), 77), "PNG"), SETTINGS).mode == "L"


def test_cmyk_and_palette_become_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in ink
    palette = photo().convert("P")

    red = decode_image(encoded(cmyk, "JPEG", quality=95), SETTINGS)
    assert red.mode == "RGB"
    assert np.allclose(mean_colour(red), (255, 0, 0), atol=6)
    assert decode_image(encoded(palette, "PNG"), SETTINGS).mode == "RGB"


def test_an_srgb_profile_leaves_pixels_alone() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = photo()

    image = decode_image(encoded(source, "PNG", icc_profile=srgb), SETTINGS)

    assert np.array_equal(np.asarray(image), np.asarray(source))


def test_a_broken_profile_is_ignored_not_fatal() -> None:
    source = photo()

    image = decode_image(encoded(source, "PNG", icc_profile=b"not a profile"), SETTINGS)

    assert np.array_equal(np.asarray(image), np.asarray(source))
    assert image.info == {}


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "png"])
def test_encode_is_deterministic_and_decodes_back(fmt: str) -> None:
    source = photo()
    spec = OutputSpec(format=fmt, quality=92)

    first, second = encode_image(source, spec), encode_image(source, spec)

    assert first == second
    back = decode_image(first, SETTINGS)
    assert back.size == source.size
    assert np.allclose(mean_colour(back), mean_colour(source), atol=3)
    assert Image.open(io.BytesIO(first)).format == {"webp": "WEBP", "jpeg": "JPEG"}.get(fmt, "PNG")


@pytest.mark.parametrize("spec", [OutputSpec(format="png"), OutputSpec(lossless=True)])
def test_lossless_outputs_keep_every_pixel(spec: OutputSpec) -> None:
    source = photo().convert("RGBA")
    source.putalpha(Image.linear_gradient("L").resize(source.size))

    back = Image.open(io.BytesIO(encode_image(source, spec)))

    assert np.array_equal(np.asarray(back.convert("RGBA")), np.asarray(source))


def test_quality_changes_jpeg_size() -> None:
    source = photo((128, 128))
    low = encode_image(source, OutputSpec(format="jpeg", quality=30))
    high = encode_image(source, OutputSpec(format="jpeg", quality=95))

    assert len(low) < len(high) / 2


def test_jpeg_lays_transparency_onto_white() -> None:
    clear = Image.new("RGBA", (16, 16), (0, 0, 0, 0))

    out = Image.open(io.BytesIO(encode_image(clear, OutputSpec(format="jpeg"))))

    assert out.mode == "RGB"
    assert np.allclose(mean_colour(out), (255, 255, 255), atol=1)


def test_jpeg_cannot_be_lossless() -> None:
    with pytest.raises(InputInvalid, match="JPEG cannot be lossless"):
        encode_image(photo(), OutputSpec(format="jpeg", lossless=True))


def test_greyscale_webp_output_is_written() -> None:
    out = encode_image(Image.new("L", (16, 16), 90), OutputSpec(format="webp", lossless=True))

    assert Image.open(io.BytesIO(out)).convert("L").getpixel((3, 3)) == 90


OUTPUT_FORMATS = get_args(OutputSpec.model_fields["format"].annotation)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_every_output_format_is_served_as_the_type_its_bytes_are(fmt: str) -> None:
    """A browser or S3 client is told the type of what was written, for every format a
    job may ask for (a format added to OutputSpec without a content type fails here)."""
    written = Image.open(io.BytesIO(encode_image(photo(), OutputSpec(format=fmt))))

    assert CONTENT_TYPES[fmt] == Image.MIME[written.format]
