"""Sizing, masks and the variant-loader table of the generative pipelines (no models)."""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")

import torch
from PIL import Image, ImageChops

import jobs.ops.generative  # noqa: F401
from jobs.errors import InputInvalid, JobCanceled, ModelUnavailable, OutOfMemory
from jobs.ops import get_op
from jobs.schema import Lane
from model_store.manifest import KINDS, Variant
from pipelines.base import OpContext
from pipelines.generative.denoise import StepHook, gpu_memory_guard, job_seed
from pipelines.generative.inpaint import paste_back, region_mask
from pipelines.generative.sizing import check_image, lane_side, plan_size
from pipelines.generative.variants import LOADERS

pytestmark = pytest.mark.gen

CPU = torch.device("cpu")


def variant(kind: str, **options: object) -> Variant:
    return Variant(name=kind, kind=kind, tiers=["a10"], memory_gb=1, options=options)


# -- sizing --------------------------------------------------------------------------


def test_small_inputs_keep_their_size_and_work_on_the_latent_grid() -> None:
    plan = plan_size((100, 60), max_side=1024, multiple=16)
    assert plan.out == (100, 60)
    assert plan.work == (96, 64)
    assert all(side % 16 == 0 for side in plan.work)


def test_large_inputs_shrink_to_max_side_keeping_aspect() -> None:
    plan = plan_size((4000, 3000), max_side=1024, multiple=16)
    assert plan.out == (1024, 768)
    assert plan.work == (1024, 768)
    portrait = plan_size((3000, 4500), max_side=1024, multiple=8)
    assert portrait.out == (683, 1024)
    assert abs(portrait.work[0] / portrait.work[1] - 3000 / 4500) < 0.01


def test_previews_render_at_the_preview_side() -> None:
    params = get_op("kontext_edit").validate({"prompt": "p", "max_side": 800})
    assert lane_side(params, OpContext(lane=Lane.PREVIEW)) == 512
    assert lane_side(params, OpContext(lane=Lane.FINAL)) == 800


@pytest.mark.parametrize(("size", "complaint"), [((10, 300), "at least"), ((900, 100), "aspect")])
def test_unusable_images_are_refused(size: tuple[int, int], complaint: str) -> None:
    with pytest.raises(InputInvalid, match=complaint):
        check_image(Image.new("RGB", size))


# -- masks ---------------------------------------------------------------------------


def inpaint_params(**raw: object) -> object:
    return get_op("inpaint").validate({"prompt": "a cat", **raw})


def test_a_box_becomes_a_mask_in_input_pixels() -> None:
    mask = region_mask(
        Image.new("RGB", (100, 80)), inpaint_params(box=[10, 20, 30, 50]), OpContext()
    )
    assert mask.getbbox() == (10, 20, 30, 50)


def test_a_box_outside_the_image_is_refused() -> None:
    with pytest.raises(InputInvalid, match="outside the 100x80 input"):
        region_mask(Image.new("RGB", (100, 80)), inpaint_params(box=[10, 20, 130, 50]), OpContext())


def test_a_mask_image_must_match_the_input_aspect_and_mark_something() -> None:
    image = Image.new("RGB", (100, 80))
    half = Image.new("L", (50, 40))
    half.paste(255, (0, 0, 25, 40))
    mask = region_mask(image, inpaint_params(), OpContext(extra_inputs=[half]))
    assert mask.size == (100, 80) and mask.getbbox() == (0, 0, 50, 80)
    with pytest.raises(InputInvalid, match="aspect"):
        region_mask(image, inpaint_params(), OpContext(extra_inputs=[Image.new("L", (50, 50))]))
    with pytest.raises(InputInvalid, match="nothing to repaint"):
        region_mask(image, inpaint_params(), OpContext(extra_inputs=[Image.new("L", (100, 80))]))
    with pytest.raises(InputInvalid, match="needs a region"):
        region_mask(image, inpaint_params(), OpContext())


def test_pasting_back_keeps_every_pixel_away_from_the_region() -> None:
    original = Image.new("RGB", (100, 80), (10, 200, 30))
    painted = Image.new("RGB", (100, 80), (250, 0, 0))
    mask = region_mask(original, inpaint_params(box=[40, 30, 60, 50]), OpContext())
    out = paste_back(painted, original, mask)
    assert out.getpixel((50, 40)) == (250, 0, 0)
    outside = ImageChops.difference(out, original).crop((0, 0, 100, 25))
    assert outside.getbbox() is None


# -- denoising hooks -----------------------------------------------------------------


def test_the_step_hook_reports_progress_and_stops_a_canceled_job() -> None:
    seen: list[float] = []
    ctx = OpContext(progress=seen.append, should_stop=lambda: len(seen) >= 2)
    hook = StepHook(ctx, steps=4)
    hook(None, 0, 999, {})
    with pytest.raises(JobCanceled, match="step 2 of 4"):
        hook(None, 1, 500, {})
    assert seen == [0.25, 0.5]


def test_a_job_without_a_seed_gets_one_recorded() -> None:
    ctx = OpContext(seed=None)
    seed = job_seed(ctx)
    assert ctx.info["seed"] == seed
    assert job_seed(OpContext(seed=7)) == 7


def test_cuda_out_of_memory_becomes_a_retryable_job_error() -> None:
    guard = gpu_memory_guard("kontext@1 at 1024x1024")
    with pytest.raises(OutOfMemory, match="smaller max_side") as caught, guard:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert caught.value.retryable
    with pytest.raises(ValueError), gpu_memory_guard("x"):
        raise ValueError("not memory")


# -- variant loaders -----------------------------------------------------------------


def test_every_variant_kind_the_store_knows_has_a_loader() -> None:
    assert set(LOADERS) == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_plain_kinds_pick_their_dtype(kind: str, dtype: torch.dtype) -> None:
    args = LOADERS[kind](variant(kind), CPU, ["transformer"])
    assert args.dtype == dtype and args.quantization is None


def test_quantized_kinds_quantize_the_named_components() -> None:
    args = LOADERS["int8_weight_only"](variant("int8_weight_only"), CPU, ["transformer"])
    assert args.quantization is not None
    assert set(args.quantization.quant_mapping) == {"transformer"}
    fp8 = LOADERS["fp8"](variant("fp8"), CPU, ["unet"])
    assert fp8.quantization is not None and set(fp8.quantization.quant_mapping) == {"unet"}


@pytest.mark.parametrize(("kind", "complaint"), [("nf4", "CUDA"), ("tensorrt", "TensorRT")])
def test_kinds_this_cpu_cannot_run_say_what_they_need(kind: str, complaint: str) -> None:
    with pytest.raises(ModelUnavailable, match=complaint):
        LOADERS[kind](variant(kind), CPU, ["transformer"])


def test_an_onnx_variant_runs_on_cpu_but_needs_its_graph_file() -> None:
    with pytest.raises(ModelUnavailable, match=r"lists no \.onnx file"):
        LOADERS["onnx"](variant("onnx"), CPU, ["transformer"])


def test_an_unknown_dtype_or_fp8_mode_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="dtype"):
        LOADERS["fp32"](variant("fp32", dtype="fp64"), CPU, ["unet"])
    with pytest.raises(ModelUnavailable, match="fp8 mode"):
        LOADERS["fp8"](variant("fp8", fp8="fastest"), CPU, ["unet"])
