"""Upscale variants, all real: fp32 / bf16 torch, ONNX (dynamic size) and static int8 ONNX
on onnxruntime, scored against fp32 at publish (a variant losing > 0.3 dB is refused),
picked per tier by the resident cache; tiling without seams on the real thick model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from jobs.settings import Settings  # noqa: E402
from model_store import ModelStore  # noqa: E402
from pipelines.upscale.export import ONNX_FILE, export_onnx  # noqa: E402
from pipelines.upscale.pipeline import UpscalePipeline, read_config  # noqa: E402
from pipelines.upscale.publish import publish_folder  # noqa: E402
from pipelines.upscale.quality import photos  # noqa: E402
from pipelines.upscale.tiny import make_tiny  # noqa: E402
from pipelines.upscale.variants import load_module  # noqa: E402
from workers.resident import ResidentModels  # noqa: E402

pytestmark = pytest.mark.gen


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # small tensors on shared cores: spinning threads cost 10-30x


def store_at(root: Path) -> ModelStore:
    return ModelStore.from_settings(
        Settings(home=root / "h", model_store=str(root / "store"), model_cache=root / "cache")
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.slow  # ~35 s on shared cores: two ONNX exports, int8 calibration, scoring
def test_every_variant_is_published_scored_and_runs_on_its_tier(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    folder = make_tiny(tmp_path / "m", "rrdn", 2)
    manifest, refused = publish_folder(store, folder, "esrgan-thick-x2", "tiny")
    assert refused == {}
    variants = {v.name: v for v in manifest.variants}
    assert set(variants) == {"fp32", "bf16", "fp16", "onnx", "onnx-int8"}
    for name in ("fp32", "bf16", "onnx", "onnx-int8"):
        score = variants[name].options["score"]
        assert {"psnr_y", "loss_db", "psnr_vs_fp32", "max_abs_diff"} <= set(score), name
        assert score["loss_db"] <= 0.3
    photo = photos(64)["chelsea"]
    cpu = ResidentModels(store, "cpu", "cpu", budget_gb=4.0, preferred={"final": ["onnx-int8"]})
    reference = ResidentModels(store, "cpu", "cpu", budget_gb=4.0).get("esrgan-thick-x2")
    int8 = cpu.get("esrgan-thick-x2")
    a10 = ResidentModels(store, "a10", "cpu", budget_gb=4.0).get("esrgan-thick-x2")
    assert (reference.variant, int8.variant, a10.variant) == ("fp32", "onnx-int8", "bf16")
    want = reference.upscale(photo)
    assert psnr(int8.upscale(photo), want) > 35 and psnr(a10.upscale(photo), want) > 40


@pytest.mark.parametrize("architecture", ["rdn", "rrdn"])
def test_onnx_export_takes_any_size_and_matches_torch(tmp_path: Path, architecture: str) -> None:
    folder = make_tiny(tmp_path, architecture, 3)
    config = read_config(folder)
    export_onnx(load_module(folder, config, "cpu"), folder / ONNX_FILE)
    from model_store.folder import scan
    from model_store.manifest import Variant

    entry = next(e for e in scan(folder) if e.path == ONNX_FILE)
    onnx = UpscalePipeline.from_folder(
        folder, Variant(name="onnx", kind="onnx", tiers=["cpu"], memory_gb=1, files=[entry])
    )
    fp32 = UpscalePipeline.from_folder(
        folder, Variant(name="fp32", kind="fp32", tiers=["cpu"], memory_gb=1)
    )
    for h, w in ((20, 13), (9, 31)):
        image = photos(64)["astronaut"][:h, :w]
        got, want = onnx.upscale(image, tile=0), fp32.upscale(image, tile=0)
        assert got.shape == (3 * h, 3 * w, 3)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_variant_losing_more_than_0_3_db_is_refused(tmp_path: Path) -> None:
    folder = make_tiny(tmp_path / "m", "rdn", 2)
    config = read_config(folder)
    broken = load_module(folder, config, "cpu")
    with torch.no_grad():  # a bad export: every weight off by a little
        for p in broken.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    export_onnx(broken, folder / ONNX_FILE)
    manifest, refused = publish_folder(
        store_at(tmp_path), folder, "esrgan-slim-x2", "t", ("fp32", "onnx")
    )
    assert [v.name for v in manifest.variants] == ["fp32"]
    assert "onnx" in refused and "against fp32 (limit 0.3 dB)" in refused["onnx"]


@pytest.mark.slow
def test_tiles_leave_no_seam_on_the_real_model(upscalerjs: dict[str, Path], tmp_path: Path) -> None:
    from pipelines.upscale.publish import convert
    from pipelines.upscale.tfjs import UpscalerPackage

    folder = tmp_path / "thick"
    convert(UpscalerPackage.open(upscalerjs["thick"]), 4, folder)
    config = read_config(folder)
    module = load_module(folder, config, "cpu")
    from pipelines.upscale.tiles import plan, upscale_tiled
    from pipelines.upscale.variants import torch_runner

    runner = torch_runner(module, "cpu", None)
    image = photos(256)["astronaut"][40:136, 60:156]  # 96 x 96: face and hair
    whole = upscale_tiled(image, runner, 4, plan(96, 96, 0, 0))
    tiled = upscale_tiled(image, runner, 4, plan(96, 96, 48, 16))
    seamed = upscale_tiled(image, runner, 4, plan(96, 96, 48, 0))
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 2
    assert np.abs(seamed.astype(int) - whole.astype(int)).max() > 2  # the test can fail
