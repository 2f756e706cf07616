"""auto_levels, white_balance and exposure on real photos, with measured margins."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_cie76, rgb2lab

from jobs.ops import get_op
from pipelines.base import OpContext
from pipelines.classic import OPS
from pipelines.classic.pixels import SRGB_TO_LINEAR
from tests.fixtures.photos import color_cast, load_photo, underexpose


def run(op: str, image: Image.Image, **params: Any) -> Image.Image:
    return OPS[op](image, get_op(op).validate(params), OpContext())


def delta_e(a: Image.Image, b: Image.Image) -> float:
    """Mean CIE76 colour difference: 1 is barely visible, 10 is obvious."""
    return float(deltaE_cie76(rgb2lab(np.asarray(a)), rgb2lab(np.asarray(b))).mean())


def test_auto_levels_spreads_a_compressed_histogram(coffee: Image.Image) -> None:
    flat = Image.fromarray((64 + np.asarray(coffee, np.float32) * 0.4).astype(np.uint8))
    out = np.asarray(run("auto_levels", flat, clip_percent=0.5))
    low, high = np.percentile(out, [1, 99])
    # measured: 1st..99th percentile 64..163 -> 0..255, std 29.6 -> 76.3
    assert high - low >= 240
    assert out.std() >= 2.2 * np.asarray(flat).std()


def test_linked_auto_levels_keeps_colour_balance_per_channel_removes_a_cast(
    motorcycle: Image.Image,
) -> None:
    cast = color_cast(motorcycle, (1.0, 1.0, 0.6))
    linked = run("auto_levels", cast, clip_percent=0.5)
    split = run("auto_levels", cast, clip_percent=0.5, per_channel=True)
    # measured: cast 10.7 -> linked 11.3 (cast kept), per channel 4.9
    assert delta_e(motorcycle, linked) > 0.8 * delta_e(motorcycle, cast)
    assert delta_e(motorcycle, split) < 0.6 * delta_e(motorcycle, cast)


def test_exposure_plus_one_ev_doubles_linear_mid_grey() -> None:
    grey = Image.new("RGB", (8, 8), (118, 118, 118))  # linear 0.181, photographic mid-grey
    up = np.asarray(run("exposure", grey, ev=1.0))[0, 0, 0]
    down = np.asarray(run("exposure", grey, ev=-1.0))[0, 0, 0]
    assert SRGB_TO_LINEAR[up] / SRGB_TO_LINEAR[118] == pytest.approx(2.0, rel=0.02)
    assert SRGB_TO_LINEAR[down] / SRGB_TO_LINEAR[118] == pytest.approx(0.5, rel=0.02)
    assert up == 162  # not 236, as doubling the encoded value would give


def test_exposure_undoes_underexposure(motorcycle: Image.Image) -> None:
    dark = underexpose(motorcycle, 1.5)
    fixed = run("exposure", dark, ev=1.5)
    # measured: dE 18.4 -> 1.8 (the gamma-2.2 darkening and the exact sRGB curve differ a little)
    assert delta_e(motorcycle, fixed) < 0.2 * delta_e(motorcycle, dark)


@pytest.mark.parametrize("gains", [(0.8, 0.95, 1.3), (1.25, 1.0, 0.75)])
@pytest.mark.parametrize(
    ("name", "method", "min_drop"),
    [
        # measured drops, blue cast / warm cast:
        ("astronaut", "shades_of_gray", 0.45),  # 54 % / 67 %
        ("motorcycle", "shades_of_gray", 0.3),  # 38 % / 52 %
        ("astronaut", "white_patch", 0.5),  # 63 % / 82 %
        ("motorcycle", "white_patch", 0.4),  # 52 % / 75 %
    ],
)
def test_white_balance_moves_a_cast_photo_back_toward_the_original(
    name: str, method: str, min_drop: float, gains: tuple[float, float, float]
) -> None:
    clean = load_photo(name)
    cast = color_cast(clean, gains)
    fixed = run("white_balance", cast, method=method)
    assert delta_e(clean, fixed) <= (1 - min_drop) * delta_e(clean, cast)


def test_gray_world_makes_the_average_neutral(astronaut: Image.Image) -> None:
    ctx = OpContext()
    params = get_op("white_balance").validate({"method": "gray_world"})
    out = np.asarray(OPS["white_balance"](astronaut, params, ctx))
    means = SRGB_TO_LINEAR[out].reshape(-1, 3).mean(axis=0)
    assert means.max() / means.min() < 1.03  # 1.78 before
    assert len(ctx.info["gains"]) == 3


def test_white_balance_strength_blends(astronaut: Image.Image) -> None:
    cast = color_cast(astronaut)
    none = run("white_balance", cast, strength=0.0)
    half = run("white_balance", cast, strength=0.5)
    full = run("white_balance", cast, strength=1.0)
    assert np.array_equal(np.asarray(none), np.asarray(cast))
    assert delta_e(astronaut, full) < delta_e(astronaut, half) < delta_e(astronaut, cast)


def test_white_balance_leaves_gray_images_alone(camera: Image.Image) -> None:
    assert np.array_equal(np.asarray(run("white_balance", camera)), np.asarray(camera))
