"""Generative edits keep a cut-out's transparency (case 05), on tiny real models.

The job runs through the worker's render path with the resident model cache an a10
worker has, on CPU; the output PNG is read back as a user would open it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from jobs.schema import Job, OutputSpec, Recipe, Step
from jobs.settings import Settings
from workers.render import Hooks, render

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

CASE = Path(__file__).parent.parent / "cases" / "images" / "05-generative-drops-alpha.png"
BOX = [140, 150, 180, 190]  # left, top, right, bottom
FEATHER = 6  # the inpaint seam is feathered a few pixels around the box


def render_case(tmp_path: Path, step: dict[str, Any], resident: Any) -> np.ndarray:
    job = Job(
        input=CASE.as_uri(),
        recipe=Recipe(steps=[Step.model_validate(step)]),
        output=OutputSpec(format="png", uri=(tmp_path / "out").as_uri() + "/", key="edit"),
        seed=7,
    )
    render(job, Settings(output=str(tmp_path / "out")), Hooks(models=resident))
    return np.asarray(Image.open(tmp_path / "out" / "edit.png"))


def test_case_05_inpaint_keeps_alpha_and_every_pixel_outside_the_box(
    tmp_path: Path, resident: Any
) -> None:
    before = np.asarray(Image.open(CASE))
    params = {"prompt": "a red ball", "box": BOX, "max_side": 320, "steps": 2}

    after = render_case(tmp_path, {"inpaint": params}, resident)

    assert after.shape == before.shape  # RGBA, same size
    outside = np.ones(before.shape[:2], bool)
    left, top, right, bottom = BOX
    outside[top - FEATHER : bottom + FEATHER, left - FEATHER : right + FEATHER] = False
    assert np.array_equal(after[..., 3], before[..., 3])  # transparency as it was
    visible = outside & (before[..., 3] > 0)
    assert np.array_equal(after[visible], before[visible])


def test_an_instruction_edit_keeps_the_cutout_transparent(tmp_path: Path, resident: Any) -> None:
    before = np.asarray(Image.open(CASE))
    params = {"prompt": "make it blue", "max_side": 160, "steps": 2}

    after = render_case(tmp_path, {"ip2p_edit": params}, resident)

    assert after.ndim == 3 and after.shape[2] == 4
    alpha = np.asarray(Image.fromarray(before[..., 3]).resize(after.shape[1::-1]))
    clear = alpha == 0
    assert clear.mean() > 0.5  # the case is 65 % transparent, and still is
    # the same pixels are clear (the edge of a resized alpha may differ by a pixel)
    assert ((after[..., 3] == 0) == clear).mean() > 0.97
