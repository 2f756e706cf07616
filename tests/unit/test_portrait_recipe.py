"""The shipped `portrait_retouch` recipe: it validates, its order keeps alpha, and it
turns a portrait into a levelled, smoothed cut-out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

import jobs.ops.portrait  # noqa: F401  (registers the portrait ops)
from bench.portrait import astronaut_subject_mask, iou
from jobs.schema import Lane
from jobs.tiers import route
from pipelines.base import OpContext
from pipelines.registry import implementation
from producer.recipes import load_recipe
from samples.recipes import recipe_path


def run_recipe(image: Image.Image, lane: Lane = Lane.FINAL) -> tuple[Image.Image, dict]:
    """The steps in order, the way a worker's render loop runs them."""
    info: dict = {}
    for step in load_recipe(recipe_path("portrait_retouch")).recipe.steps:
        ctx = OpContext(lane=lane)
        image = implementation(step.op)(image, step.typed_params(), ctx)
        info.update({f"{step.op}.{k}": v for k, v in ctx.info.items()})
    return image, info


def test_recipe_validates_and_routes_to_the_cpu() -> None:
    loaded = load_recipe(recipe_path("portrait_retouch"))
    ops = [step.op for step in loaded.recipe.steps]
    # The cut-out is last: no later step may drop or level its alpha channel.
    assert ops == ["auto_levels", "skin_smooth", "remove_background"]
    assert loaded.output["format"] in ("png", "webp")  # formats that keep alpha
    assert route(loaded.recipe).name == "cpu"


def test_unknown_recipe_names_the_shipped_ones() -> None:
    with pytest.raises(FileNotFoundError, match="portrait_retouch"):
        recipe_path("no_such_recipe")


def test_recipe_makes_a_smoothed_cutout() -> None:
    astronaut = Image.fromarray(data.astronaut())
    out, info = run_recipe(astronaut)
    assert out.mode == "RGBA" and out.size == astronaut.size
    assert info["skin_smooth.faces"] == 1
    alpha = np.asarray(out.getchannel("A"))
    assert iou(alpha >= 128, astronaut_subject_mask()) >= 0.82  # GrabCut without a store
    # The alpha survives a PNG round trip, as the recipe's output format promises.
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    assert np.array_equal(np.asarray(Image.open(buffer).getchannel("A")), alpha)


def test_recipe_preview_matches_the_final() -> None:
    astronaut = Image.fromarray(data.astronaut())
    final, _ = run_recipe(astronaut)
    preview, _ = run_recipe(astronaut, Lane.PREVIEW)
    # GrabCut works at 160 px in preview: the masks still agree closely.
    final_alpha = np.asarray(final.getchannel("A")) >= 128
    assert iou(final_alpha, np.asarray(preview.getchannel("A")) >= 128) > 0.9
