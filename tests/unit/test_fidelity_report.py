"""Contact-sheet thumbnails show images the way the outputs look (16-bit, profiles, frames)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageCms

from producer.report import skipped_row, thumbnail


def test_a_16_bit_grey_scan_thumbnail_is_grey_not_white() -> None:
    grey = np.full((60, 80), 20000, np.uint16)  # 30 % grey at 16 bits
    _, png = cv2.imencode(".png", grey)

    thumb = Image.open(io.BytesIO(thumbnail(png.tobytes())))

    mean = np.asarray(thumb, dtype=float).mean()
    assert abs(mean - 20000 / 257) < 3  # was 255: values clipped at 255 on conversion


def test_a_48_bit_scan_thumbnail_keeps_its_colour() -> None:
    rgb = np.zeros((60, 80, 3), np.uint16)
    rgb[..., 0] = 50000  # red, as OpenCV writes BGR
    _, tif = cv2.imencode(".tif", rgb)

    thumb = np.asarray(Image.open(io.BytesIO(thumbnail(tif.tobytes()))), dtype=float)

    assert np.allclose(thumb.reshape(-1, 3).mean(axis=0), (0, 0, 50000 / 257), atol=4)


def test_a_photo_with_a_colour_profile_keeps_its_colour_in_the_thumbnail() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 160, 90)).save(source, "JPEG", quality=95, icc_profile=srgb)

    thumb = np.asarray(Image.open(io.BytesIO(thumbnail(source.getvalue()))), dtype=float)

    assert np.allclose(thumb.reshape(-1, 3).mean(axis=0), (30, 160, 90), atol=4)


def test_a_skipped_file_is_a_manifest_row_with_its_reason() -> None:
    row = skipped_row("shoot/notes.txt", "text file").to_dict()

    assert (row["state"], row["error"]) == ("skipped", "text file")
    assert row["source"] == "shoot/notes.txt"
