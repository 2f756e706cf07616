"""The real UpscalerJS weights: the port reproduces each package's own samples, and the
import publishes them with per-file sha256 and scored variants. Skips without the
packages (`make upscalerjs`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from darkroom.cli import main  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from model_store import ModelStore  # noqa: E402
from pipelines.upscale.arch import build  # noqa: E402
from pipelines.upscale.tfjs import UpscalerPackage, decode_png, read_model  # noqa: E402

pytestmark = pytest.mark.gen


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # shared cores: spinning threads ran the RRDN 13-19x slower


CASES = [(size, scale) for size in ("slim", "medium") for scale in (2, 3, 4)]
THICK = [pytest.param("thick", scale, marks=pytest.mark.slow) for scale in (2, 3, 4, 8)]


@pytest.mark.parametrize("size, scale", CASES + THICK)
def test_port_reproduces_the_package_sample_within_one_level(
    upscalerjs: dict[str, Path], size: str, scale: int
) -> None:
    package = UpscalerPackage.open(upscalerjs[size])
    expected = package.sample(scale)
    assert expected is not None
    config, state = read_model(package, scale)
    module = build(config).eval()
    module.load_state_dict(state)
    fixture = decode_png(package.fixture()).astype(np.float32)
    with torch.inference_mode():
        out = module(torch.from_numpy(fixture).permute(2, 0, 1)[None])[0]
    got = out.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
    diff = np.abs(got.astype(int) - decode_png(expected).astype(int))
    assert got.shape == (128 * scale, 128 * scale, 3)
    assert diff.max() <= 1, f"{size} x{scale}: max {diff.max()} levels"


@pytest.mark.slow  # ~40 s on shared cores: ONNX export, int8 calibration, scoring
def test_import_publishes_verified_files_and_scored_variants(
    upscalerjs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DARKROOM_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("DARKROOM_MODEL_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        main, ["models", "import-upscalerjs", str(upscalerjs["slim"]), "--scale", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "published esrgan-slim-x4@1.0.0 (alias stable)" in result.output
    store = ModelStore.from_settings(
        Settings(model_store=str(tmp_path / "store"), model_cache=tmp_path / "cache")
    )
    manifest = store.resolve("esrgan-slim-x4")
    assert manifest.pipeline_class == "UpscalePipeline" and manifest.license == "MIT"
    paths = {f.path for f in manifest.files}
    assert paths == {"config.json", "model.safetensors", "model.onnx", "model.int8.onnx"}
    local = store.pull(manifest.ref)
    for entry in manifest.files:
        assert hashlib.sha256((local.path / entry.path).read_bytes()).hexdigest() == entry.sha256
    variants = {v.name: v for v in manifest.variants}
    assert set(variants) == {"fp32", "bf16", "fp16", "onnx", "onnx-int8"}
    for name in ("bf16", "onnx", "onnx-int8"):
        score = variants[name].options["score"]
        assert score["loss_db"] <= 0.3 and score["max_abs_diff"] >= 0, (name, score)
    assert variants["onnx"].options["score"]["max_abs_diff"] <= 1
    assert [f.path for f in variants["onnx-int8"].files] == ["model.int8.onnx"]
    assert isinstance(variants["fp16"].options["score"], str)  # CUDA only: published unscored
