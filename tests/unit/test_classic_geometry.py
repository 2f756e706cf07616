"""resize, crop and convert: sizes, aspect, filters, modes and refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from jobs.errors import InputInvalid, InputTooLarge
from jobs.ops import get_op
from pipelines.base import OpContext
from pipelines.classic import OPS


def run(op: str, image: Image.Image, **params: Any) -> Image.Image:
    return OPS[op](image, get_op(op).validate(params), OpContext())


@pytest.mark.parametrize(
    ("params", "size"),
    [
        ({"width": 256}, (256, 171)),  # 600x400 keeps 3:2
        ({"height": 200}, (300, 200)),
        ({"max_side": 300}, (300, 200)),
        ({"max_side": 5000}, (600, 400)),  # max_side never enlarges
        ({"width": 1200}, (1200, 800)),
        ({"width": 300, "height": 300}, (300, 200)),  # contain: inside the box
        ({"width": 300, "height": 300, "fit": "cover"}, (300, 300)),
        ({"width": 100, "height": 300, "fit": "stretch"}, (100, 300)),
    ],
)
def test_resize_sizes_keep_aspect_unless_stretched(
    coffee: Image.Image, params: dict[str, Any], size: tuple[int, int]
) -> None:
    assert coffee.size == (600, 400)
    assert run("resize", coffee, **params).size == size


def test_cover_crops_evenly_around_the_centre(coffee: Image.Image) -> None:
    covered = np.asarray(run("resize", coffee, width=200, height=200, fit="cover"), np.float32)
    # 600x400 -> 300x200, then 50 px cut from each side: the middle matches a plain halving.
    halved = np.asarray(run("resize", coffee, width=300), np.float32)
    assert np.abs(covered - halved[:, 50:250]).mean() < 0.5


def test_downscale_averages_fine_detail_instead_of_aliasing() -> None:
    # A 1-px checkerboard shrunk 4x must become flat mid-gray, not a moire pattern.
    board = ((np.indices((512, 512)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = np.asarray(run("resize", Image.fromarray(board), width=128))
    assert small.shape == (128, 128)
    assert np.abs(small.astype(int) - 128).max() <= 1


def test_upscale_is_smooth_and_faithful(astronaut: Image.Image) -> None:
    up = run("resize", astronaut, width=1024)
    back = np.asarray(run("resize", up, width=512), np.float32)
    assert up.size == (1024, 1024)
    assert np.abs(back - np.asarray(astronaut, np.float32)).mean() < 2.0


def test_rgba_resize_does_not_bleed_hidden_colour() -> None:
    # Left half opaque white, right half transparent *red*: after shrinking, no visible
    # pixel may turn pink, as it does when colour and alpha are resampled separately.
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[:, :32] = (255, 255, 255, 255)
    pixels[:, 32:] = (255, 0, 0, 0)
    small = np.asarray(run("resize", Image.fromarray(pixels), width=13))
    visible = small[..., 3] > 0
    assert small.shape == (13, 13, 4)
    assert (small[visible][:, 1] >= 250).all()  # green stays full: white, not pink


def test_resize_refuses_an_output_too_large_to_hold(camera: Image.Image) -> None:
    with pytest.raises(InputTooLarge, match="limit is 100 MP"):
        run("resize", camera, width=16384, height=16384, fit="stretch")


def test_crop_box_cuts_exactly(astronaut: Image.Image) -> None:
    out = run("crop", astronaut, left=10, top=20, width=100, height=50)
    assert out.size == (100, 50)
    assert np.array_equal(np.asarray(out), np.asarray(astronaut)[20:70, 10:110])


def test_crop_beyond_the_image_is_an_error_not_a_clamp(astronaut: Image.Image) -> None:
    with pytest.raises(InputInvalid, match="crop box 0,0,5000,5000 exceeds the 512x512 image"):
        run("crop", astronaut, left=0, top=0, width=5000, height=5000)
    with pytest.raises(InputInvalid, match="exceeds"):
        run("crop", astronaut, left=500, top=0, width=13, height=10)


@pytest.mark.parametrize(("aspect", "size"), [("4:5", (320, 400)), ("16:9", (600, 338))])
def test_crop_to_aspect_is_centred_and_as_large_as_possible(
    coffee: Image.Image, aspect: str, size: tuple[int, int]
) -> None:
    out = run("crop", coffee, aspect=aspect)
    assert out.size == size
    left, top = (600 - size[0]) // 2, (400 - size[1]) // 2
    expected = np.asarray(coffee)[top : top + size[1], left : left + size[0]]
    assert np.array_equal(np.asarray(out), expected)


def test_convert_between_modes(astronaut: Image.Image, camera: Image.Image) -> None:
    gray = run("convert", astronaut, mode="gray")
    assert gray.mode == "L" and gray.size == astronaut.size
    assert run("convert", camera, mode="rgb").mode == "RGB"
    rgba = run("convert", astronaut, mode="rgba")
    assert rgba.mode == "RGBA" and (np.asarray(rgba)[..., 3] == 255).all()


def test_dropping_alpha_lays_the_image_on_the_background() -> None:
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[..., 0] = 255  # red, fully transparent on the left half, opaque on the right
    pixels[:, 4:, 3] = 255
    out = np.asarray(run("convert", Image.fromarray(pixels), mode="rgb", background="#0000ff"))
    assert (out[:, :4] == (0, 0, 255)).all()
    assert (out[:, 4:] == (255, 0, 0)).all()


def test_unsupported_modes_are_refused_with_a_way_out() -> None:
    palette = Image.new("P", (16, 16))
    with pytest.raises(InputInvalid, match="convert"):
        run("resize", palette, width=8)
    with pytest.raises(InputInvalid, match="mode CMYK"):
        run("sharpen", Image.new("CMYK", (16, 16)))
