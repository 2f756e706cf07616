"""What holds for every classic op: the catalogue, modes, alpha, determinism, the demo set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from jobs.errors import SchemaError
from jobs.ops import CATALOGUE, get_op
from jobs.schema import Recipe
from pipelines.base import OpContext
from pipelines.classic import OPS
from pipelines.registry import implementation
from samples.photos import make_sample_set
from samples.recipes import RESTORE_RECIPE

# params for running each op once; every op must appear here
EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "resize": {"max_side": 200},
    "crop": {"left": 10, "top": 20, "width": 150, "height": 100},
    "convert": {"mode": "rgb"},
    "auto_levels": {"clip_percent": 1.0},
    "white_balance": {},
    "exposure": {"ev": 0.5},
    "denoise": {"strength": 5},
    "sharpen": {"amount": 1.0},
    "dust_scratch_removal": {"sensitivity": 0.9},
    "restore_faded_color": {},
}
TONAL_OPS = sorted(set(EXAMPLE_PARAMS) - {"resize", "crop", "convert"})


def run(op: str, image: Image.Image) -> Image.Image:
    return OPS[op](image, get_op(op).validate(EXAMPLE_PARAMS[op]), OpContext())


def with_alpha(image: Image.Image) -> Image.Image:
    """The photo with a diagonal alpha ramp and a fully transparent corner."""
    h, w = image.height, image.width
    ramp = (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w)).astype(np.uint8)
    ramp[: h // 4, : w // 4] = 0
    return Image.fromarray(np.dstack([np.asarray(image), ramp]))


def test_every_classic_op_in_the_catalogue_is_implemented() -> None:
    classic = {name for name, spec in CATALOGUE.items() if spec.family == "classic"}
    assert classic == set(OPS) == set(EXAMPLE_PARAMS)
    for name in classic:
        assert implementation(name) is OPS[name]


@pytest.mark.parametrize(
    ("op", "params", "problem"),
    [
        ("exposure", {"ev": 9}, "ev"),
        ("exposure", {}, "ev"),
        ("denoise", {"strength": 0}, "strength"),
        ("sharpen", {"amount": 1, "sigma": 2}, "sigma"),
        ("resize", {}, "give width, height or max_side"),
        ("resize", {"width": 10, "fit": "stretch"}, "needs both width and height"),
        ("resize", {"max_side": 10, "width": 5}, "max_side excludes"),
        ("crop", {"aspect": "4:0"}, "aspect"),
        ("crop", {"left": 0, "top": 0, "width": 5}, "give left, top, width and height"),
        ("convert", {"mode": "cmyk"}, "mode"),
        ("convert", {"background": "white"}, "background"),
        ("white_balance", {"method": "auto"}, "method"),
        ("dust_scratch_removal", {"max_defect_px": 0}, "max_defect_px"),
        ("restore_faded_color", {"strength": 1.5}, "strength"),
    ],
)
def test_bad_params_are_rejected_by_the_schema(
    op: str, params: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SchemaError, match=problem):
        get_op(op).validate(params)


@pytest.mark.parametrize("op", TONAL_OPS)
def test_tonal_ops_keep_alpha_untouched(op: str, astronaut: Image.Image) -> None:
    rgba = with_alpha(astronaut)
    out = run(op, rgba)
    assert out.mode == "RGBA" and out.size == rgba.size
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(rgba)[..., 3])


def test_geometry_ops_carry_alpha_along(astronaut: Image.Image) -> None:
    rgba = with_alpha(astronaut)
    cropped = run("crop", rgba)
    assert np.array_equal(np.asarray(cropped)[..., 3], np.asarray(rgba)[20:120, 10:160, 3])
    assert run("resize", rgba).mode == "RGBA"


@pytest.mark.parametrize("op", sorted(EXAMPLE_PARAMS))
def test_every_op_takes_gray_and_rgb(op: str, camera: Image.Image, coffee: Image.Image) -> None:
    gray = run(op, camera)
    assert gray.mode == ("RGB" if op == "convert" else "L")
    assert run(op, coffee).mode == "RGB"


@pytest.mark.parametrize("op", sorted(EXAMPLE_PARAMS))
def test_ops_are_deterministic_and_leave_their_input_alone(op: str, chelsea: Image.Image) -> None:
    before = np.asarray(chelsea).copy()
    first, second = run(op, chelsea), run(op, chelsea)
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert np.array_equal(np.asarray(chelsea), before)


def test_restore_recipe_is_a_valid_recipe() -> None:
    recipe = Recipe.model_validate(RESTORE_RECIPE)
    assert [step.op for step in recipe.steps] == [
        "dust_scratch_removal",
        "denoise",
        "restore_faded_color",
        "white_balance",
        "auto_levels",
        "sharpen",
    ]


def test_sample_set_is_real_and_deterministic(tmp_path: Path) -> None:
    paths = make_sample_set(tmp_path / "a")
    again = make_sample_set(tmp_path / "b")
    assert len(paths) == 8
    for path, twin in zip(paths, again, strict=True):
        assert path.read_bytes() == twin.read_bytes()
        with Image.open(path) as image:
            assert 0.3e6 <= image.width * image.height <= 1e6
            assert image.mode in ("RGB", "L")
    assert {p.suffix for p in paths} == {".jpg", ".png"}
