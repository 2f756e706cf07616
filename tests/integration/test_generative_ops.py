"""Every generative op on tiny real models: published, pulled from the store, loaded by
the worker's resident cache, run on CPU as an a10 worker would run them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageChops

import jobs.ops.generative  # noqa: F401  (registers the family until jobs.ops does)
from jobs.errors import InputInvalid, JobCanceled, ModelUnavailable
from jobs.ops import get_op
from jobs.schema import Lane
from pipelines.base import OpContext

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

from pipelines.generative import OPS  # noqa: E402
from pipelines.generative.sizing import fit  # noqa: E402

# (op, extra params): every model family the ops serve
CASES: list[tuple[str, dict[str, Any]]] = [
    ("kontext_edit", {}),
    ("qwen_edit", {}),
    ("ip2p_edit", {}),
    ("inpaint", {"box": [30, 20, 80, 50]}),
    ("inpaint", {"box": [30, 20, 80, 50], "model": "flux-fill"}),
]
IDS = ["kontext", "qwen-plus", "ip2p", "sd-inpaint", "flux-fill"]
BUDGET = {"max_side": 96, "preview_side": 64, "steps": 3, "preview_steps": 2}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 5:3 image with structure (gradients and a disc), not square, not on the grid."""
    y, x = np.mgrid[0:72, 0:120]
    rgb = np.stack([x * 2, y * 3, ((x - 60) ** 2 + (y - 36) ** 2 < 400) * 200], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def run(op: str, image: Image.Image, raw: dict[str, Any], models: Any, **ctx: Any) -> Image.Image:
    params = get_op(op).validate({"prompt": "make the sky red", **BUDGET, **raw})
    context = OpContext(models=models, **ctx)
    out = OPS[op](image, params, context)
    out.info = dict(context.info)  # what the op recorded, for the assertions
    return out


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize(("op", "raw"), CASES, ids=IDS)
def test_final_and_preview_keep_the_aspect_and_repeat_per_seed(
    op: str, raw: dict[str, Any], photo: Image.Image, resident: Any
) -> None:
    seen: list[float] = []
    final = run(op, photo, raw, resident, seed=1, progress=seen.append)
    again = run(op, photo, raw, resident, seed=1)
    other = run(op, photo, raw, resident, seed=2)
    preview = run(op, photo, raw, resident, seed=1, lane=Lane.PREVIEW)

    # The input's 5:3 aspect at the lane's size, RGB, no square crop.
    assert final.size == (96, 58) and final.mode == "RGB"
    assert preview.size == (64, 38) and preview.mode == "RGB"
    assert final.info["steps"] == 3 and preview.info["steps"] == 2
    # The same seed and variant give the same image; another seed another image.
    assert np.array_equal(pixels(final), pixels(again))
    assert np.abs(pixels(final) - pixels(other)).mean() > 0.5
    # Progress arrives once per denoising step and ends at 1.
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert final.info["decoder"] == "full"


@pytest.mark.parametrize(("op", "raw"), CASES, ids=IDS)
def test_previews_decode_with_the_linked_tiny_decoder(
    op: str, raw: dict[str, Any], photo: Image.Image, resident: Any
) -> None:
    preview = run(op, photo, raw, resident, seed=1, lane=Lane.PREVIEW)
    has_tiny = preview.info["model"].split("@")[0] in ("kontext", "flux-fill", "ip2p", "sd-inpaint")
    assert preview.info["decoder"] == ("tiny" if has_tiny else "full")


@pytest.mark.parametrize("op", ["kontext_edit", "ip2p_edit"])
def test_a_canceled_job_stops_between_steps(op: str, photo: Image.Image, resident: Any) -> None:
    seen: list[float] = []
    with pytest.raises(JobCanceled, match="after denoising step 1 of 3"):
        run(op, photo, {}, resident, seed=1, progress=seen.append, should_stop=lambda: True)
    assert seen == [pytest.approx(1 / 3)]


@pytest.mark.parametrize(
    ("op", "raw", "extra", "complaint"),
    [
        ("kontext_edit", {}, [], "at least 16 px"),
        ("inpaint", {"box": [0, 0, 200, 10]}, [], "outside"),
        ("inpaint", {}, [], "needs a region"),
        ("qwen_edit", {}, [Image.new("RGB", (64, 64))] * 3, "3 image"),
    ],
)
def test_bad_input_fails_before_any_model_loads(
    op: str, raw: dict[str, Any], extra: list[Image.Image], complaint: str, resident: Any
) -> None:
    image = (
        Image.new("RGB", (10, 10))
        if complaint.startswith("at least")
        else Image.new("RGB", (120, 72))
    )
    with pytest.raises(InputInvalid, match=complaint):
        run(op, image, raw, resident, extra_inputs=extra)
    assert resident.stats.loads == 0 and resident.resident() == []


def test_a_missing_model_fails_with_its_name(photo: Image.Image, resident: Any) -> None:
    with pytest.raises(ModelUnavailable, match="no-such-model@stable"):
        run("kontext_edit", photo, {"model": "no-such-model@stable"}, resident)


def test_a_model_of_the_wrong_family_is_refused(photo: Image.Image, resident: Any) -> None:
    with pytest.raises(InputInvalid, match="InstructPix2PixPipeline; kontext_edit runs Flux"):
        run("kontext_edit", photo, {"model": "ip2p"}, resident)


def test_a_worker_without_a_model_cache_says_so(photo: Image.Image) -> None:
    with pytest.raises(ModelUnavailable, match="model cache"):
        run("ip2p_edit", photo, {}, None)


def test_inpainting_leaves_everything_outside_the_region_as_it_was(
    photo: Image.Image, resident: Any
) -> None:
    out = run("inpaint", photo, {"box": [30, 20, 80, 50]}, resident, seed=3)
    before = fit(photo, out.size)
    # The box is [24, 16, 64, 40] at the output's 0.8 scale; its seam is feathered ~3 px.
    assert ImageChops.difference(out, before).crop((0, 0, 96, 10)).getbbox() is None
    assert ImageChops.difference(out, before).crop((72, 0, 96, 58)).getbbox() is None
    assert ImageChops.difference(out, before).crop((30, 20, 58, 36)).getbbox() is not None


def test_a_mask_image_does_what_the_same_box_does(photo: Image.Image, resident: Any) -> None:
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (30, 20, 80, 50))
    by_box = run("inpaint", photo, {"box": [30, 20, 80, 50]}, resident, seed=4)
    by_mask = run("inpaint", photo, {}, resident, seed=4, extra_inputs=[mask])
    assert np.array_equal(pixels(by_box), pixels(by_mask))


def test_qwen_plus_reads_the_reference_images(photo: Image.Image, resident: Any) -> None:
    reference = Image.new("RGB", (64, 64), (250, 250, 0))
    alone = run("qwen_edit", photo, {}, resident, seed=5)
    with_reference = run("qwen_edit", photo, {}, resident, seed=5, extra_inputs=[reference])
    assert with_reference.size == alone.size == (96, 58)
    assert not np.array_equal(pixels(alone), pixels(with_reference))


def test_single_image_qwen_refuses_reference_images(photo: Image.Image, resident: Any) -> None:
    single = {"model": "qwen-edit"}
    assert run("qwen_edit", photo, single, resident, seed=1).size == (96, 58)
    with pytest.raises(InputInvalid, match="Qwen-Image-Edit-Plus"):
        run("qwen_edit", photo, single, resident, extra_inputs=[photo])


def test_flux_fill_refuses_a_negative_prompt(photo: Image.Image, resident: Any) -> None:
    raw = {"box": [30, 20, 80, 50], "model": "flux-fill", "negative_prompt": "blur"}
    with pytest.raises(InputInvalid, match="no negative prompt"):
        run("inpaint", photo, raw, resident)


def test_a_job_without_a_seed_records_the_one_it_used(photo: Image.Image, resident: Any) -> None:
    first = run("ip2p_edit", photo, {}, resident)
    repeat = run("ip2p_edit", photo, {}, resident, seed=first.info["seed"])
    assert np.array_equal(pixels(first), pixels(repeat))
