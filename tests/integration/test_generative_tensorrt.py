"""TensorRT variants: `darkroom models build-engine` and the `tensorrt` loader.

Without the tensorrt package or CUDA both refuse with one clear line (tested here,
where neither exists). Building and running an engine needs both: that test carries
the `gpu` marker and skips with the reason.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobs.errors import ModelUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

import torch  # noqa: E402

from darkroom.models import models  # noqa: E402
from model_store import Manifest, VariantSpec  # noqa: E402
from pipelines.generative.tensorrt_engine import TokenProfile, missing_tensorrt  # noqa: E402
from tests.fixtures.tiny_models import ONNX_KONTEXT  # noqa: E402
from workers.resident import ResidentModels  # noqa: E402

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_ENGINE_HERE = missing_tensorrt(torch.device("cuda"))


def build_engine(tiny_models: Any, tmp_path: Path, *args: str) -> Any:
    uri = tiny_models.settings.model_store_uri()
    argv = ["--store", uri, "--cache", str(tmp_path / "cache"), "build-engine", *args]
    return CliRunner().invoke(models, argv)


@pytest.mark.slow
@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed: no refusal to see here")
def test_build_engine_refuses_in_one_line_without_tensorrt(
    tiny_models: Any, onnx_kontext: Manifest, tmp_path: Path
) -> None:
    result = build_engine(tiny_models, tmp_path, ONNX_KONTEXT, "--variant", "onnx")
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "tensorrt package is not installed" in lines[0]
    assert tiny_models.store.versions("kontext-onnx") == ["tiny"], "nothing published"


@pytest.mark.slow
def test_build_engine_names_the_onnx_variants_it_could_use(
    tiny_models: Any, onnx_kontext: Manifest, tmp_path: Path
) -> None:
    result = build_engine(tiny_models, tmp_path, ONNX_KONTEXT, "--variant", "fp32")
    assert result.exit_code == 1
    assert "no onnx variant 'fp32' (its onnx variants: onnx)" in result.output
    result = build_engine(tiny_models, tmp_path, "kontext@tiny", "--variant", "onnx")
    assert "(its onnx variants: none)" in result.output


@pytest.mark.skipif(NO_ENGINE_HERE is None, reason="TensorRT and CUDA are here")
def test_a_tensorrt_variant_refuses_to_load_on_a_worker_without_tensorrt(
    tiny_models: Any,
) -> None:
    store = tiny_models.store
    trt = VariantSpec(
        name="trt",
        kind="tensorrt",
        tiers=["cpu"],
        memory_gb=0.01,
        files=["transformer/diffusion_pytorch_model.safetensors"],
    )
    store.publish(tiny_models.folders["kontext"], "kontext-trt", "tiny", variants=[trt])
    cache = ResidentModels(store, "cpu", "cpu", budget_gb=8.0)
    with pytest.raises(ModelUnavailable, match=r"variant trt \(tensorrt\) cannot load here: "):
        cache.get("kontext-trt@tiny")
    assert cache.resident() == []


def test_build_engine_refuses_a_tuning_size_over_its_largest(tmp_path: Path) -> None:
    argv = ["--store", str(tmp_path / "store"), "build-engine", "kontext@1", "--variant", "onnx"]
    result = CliRunner().invoke(models, [*argv, "--opt-side", "1024", "--max-side", "512"])
    assert result.exit_code == 2
    assert "1024 is over --max-side 512" in result.output


def test_the_engine_profile_spans_the_token_counts_of_the_sizes_asked_for() -> None:
    config = {
        "in_channels": 64,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
    }
    shapes = TokenProfile.for_sides(opt_side=512, max_side=1024).shapes(config)
    # 1024 px: 64x64 latent tokens for the noisy latents and as many for the input image
    assert shapes["hidden_states"] == ((1, 2, 64), (1, 2 * 32 * 32, 64), (1, 2 * 64 * 64, 64))
    assert shapes["img_ids"][2] == (2 * 64 * 64, 3)
    assert shapes["encoder_hidden_states"][1:] == ((1, 512, 4096), (1, 512, 4096))
    assert shapes["guidance"] == ((1,), (1,), (1,))
    no_guidance = TokenProfile.for_sides(256, 512).shapes({**config, "guidance_embeds": False})
    assert "guidance" not in no_guidance


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(NO_ENGINE_HERE is not None, reason=f"no TensorRT engine here: {NO_ENGINE_HERE}")
def test_an_engine_is_built_published_and_runs_the_edit_like_torch(
    tiny_models: Any, onnx_kontext: Manifest, tmp_path: Path
) -> None:
    result = build_engine(
        tiny_models,
        tmp_path,
        ONNX_KONTEXT,
        "--variant",
        "onnx",
        "--version",
        "tiny-trt",
        "--tiers",
        "a10",
        "--opt-side",
        "128",
        "--max-side",
        "256",
        "--fp32",
    )
    assert result.exit_code == 0, result.output
    manifest = tiny_models.store.resolve("kontext-onnx@tiny-trt")
    engine = manifest.variants[0]
    assert engine.kind == "tensorrt" and engine.tiers == ["a10"]
    assert engine.options["score"]["psnr_db"] >= 30
    cache = ResidentModels(tiny_models.store, "a10", "cuda", budget_gb=8.0)
    pipe = cache.get("kontext-onnx@tiny-trt").pipe
    assert type(pipe.transformer).__name__ == "TensorRTTransformer"
    cache.clear()
