"""The upscale op's contract and the networks' pieces, with tiny random models (no I/O)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from jobs import Recipe, Step, route  # noqa: E402
from jobs.errors import InputTooLarge, JobCanceled, ModelUnavailable, SchemaError  # noqa: E402
from jobs.tiers import DEFAULT_TIERS  # noqa: E402
from model_store.manifest import Variant  # noqa: E402
from pipelines.upscale import check_size, preview_input  # noqa: E402
from pipelines.upscale.arch import build  # noqa: E402
from pipelines.upscale.pipeline import UpscalePipeline  # noqa: E402
from pipelines.upscale.tfjs import depth_to_space_order  # noqa: E402
from pipelines.upscale.tiles import plan  # noqa: E402
from pipelines.upscale.tiny import make_tiny, tiny_config  # noqa: E402

FP32 = Variant(name="fp32", kind="fp32", tiers=["cpu"], memory_gb=0.3)


def test_scale_5_and_overlapping_tiles_are_refused_at_the_boundary() -> None:
    with pytest.raises(SchemaError, match="scale"):
        Step(op="upscale", params={"scale": 5})
    with pytest.raises(SchemaError, match="overlap must be smaller than tile"):
        Step(op="upscale", params={"tile": 16, "overlap": 16})
    with pytest.raises(SchemaError, match="model"):
        Step(op="upscale", params={"model": "huge"})


def test_routes_to_cpu_and_runs_on_every_gpu_tier() -> None:
    assert route(Recipe(steps=[Step(op="upscale")])).name == "cpu"
    assert all(tier.can_run("upscale", {"scale": 8}) for tier in DEFAULT_TIERS)


def test_output_pixel_limit_is_checked_from_the_size_alone() -> None:
    check_size(Image.new("RGB", (2048, 2048)), 4)  # 8192^2: exactly the limit
    with pytest.raises(InputTooLarge, match=r"8196x8196 .* over the 67 MP limit"):
        check_size(Image.new("RGB", (2049, 2049)), 4)


def test_preview_input_keeps_aspect_under_the_pixel_budget() -> None:
    small = Image.new("RGB", (200, 100))
    assert preview_input(small) is small
    reduced = preview_input(Image.new("RGB", (1600, 800)))
    assert (
        reduced.width * reduced.height <= 256 * 256
        and abs(reduced.width / reduced.height - 2) < 0.02
    )


def test_tiles_cover_every_pixel_once_with_context_inside_the_image() -> None:
    tiles = plan(70, 45, 32, 8)
    seen = np.zeros((70, 45), int)
    for t in tiles:
        top, bottom, left, right = t.core
        seen[top:bottom, left:right] += 1
        bt, bb, bl, br = t.box
        assert 0 <= bt <= top and bottom <= bb <= 70 and 0 <= bl <= left and right <= br <= 45
    assert (seen == 1).all() and len(tiles) == 6
    assert len(plan(70, 45, 0, 8)) == 1


def tf_depth_to_space(x: np.ndarray, s: int) -> np.ndarray:
    """TF's definition, HWC: out[h*s+a, w*s+b, c] = in[h, w, (a*s+b)*C + c]."""
    h, w, cs = x.shape
    c = cs // (s * s)
    return x.reshape(h, w, s, s, c).transpose(0, 2, 1, 3, 4).reshape(h * s, w * s, c)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_permuted_channels_make_torch_pixel_shuffle_match_tf_depth_to_space(scale: int) -> None:
    x = np.random.default_rng(0).random((5, 4, 3 * scale * scale)).astype(np.float32)
    expected = tf_depth_to_space(x, scale)
    nchw = torch.from_numpy(x[..., depth_to_space_order(scale)].transpose(2, 0, 1))[None]
    got = torch.nn.functional.pixel_shuffle(nchw, scale)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)
    unpermuted = torch.nn.functional.pixel_shuffle(
        torch.from_numpy(x.transpose(2, 0, 1))[None], scale
    )
    assert not np.array_equal(unpermuted[0].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_folding_the_rdn_upsampler_is_exact(scale: int) -> None:
    torch.manual_seed(scale)
    module = build(tiny_config("rdn", scale)).eval()
    x = torch.rand(1, 3, 11, 7) * 255
    with torch.no_grad():
        plain = module(x)
        folded = module.fold()(x)
    assert torch.allclose(plain, folded, atol=1e-3)


def test_rgba_keeps_its_alpha_and_grey_stays_grey(tmp_path: Path) -> None:
    pipeline = UpscalePipeline.from_folder(make_tiny(tmp_path, "rrdn", 2), FP32)
    rgba = Image.new("RGBA", (20, 12), (200, 40, 40, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 10, 12))
    out, info = pipeline(rgba, tile=8, overlap=2)
    assert out.mode == "RGBA" and out.size == (40, 24) and info["tiles"] == 6
    alpha = np.asarray(out.getchannel("A"))
    assert alpha[:, :14].max() == 0 and alpha[:, 26:].min() == 255  # Lanczos rings 2 px
    grey, _ = pipeline(Image.new("L", (9, 9), 128))
    assert grey.mode == "L" and grey.size == (18, 18)


def test_cancel_between_tiles(tmp_path: Path) -> None:
    pipeline = UpscalePipeline.from_folder(make_tiny(tmp_path, "rdn", 2), FP32)
    with pytest.raises(JobCanceled, match="after 0 of 4 tiles"):
        pipeline(Image.new("RGB", (16, 16)), tile=8, overlap=2, should_stop=lambda: True)


def test_tensorrt_and_cpu_fp16_refuse_clearly(tmp_path: Path) -> None:
    folder = make_tiny(tmp_path, "rdn", 2)
    engine = Variant(name="trt-a10", kind="tensorrt", tiers=["a10"], memory_gb=1)
    with pytest.raises(ModelUnavailable, match=r"needs .*a CUDA device.* run the job on a tier"):
        UpscalePipeline.from_folder(folder, engine, "cpu")
    fp16 = Variant(name="fp16", kind="fp16", tiers=["edge"], memory_gb=1)
    with pytest.raises(ModelUnavailable, match="runs on CUDA"):
        UpscalePipeline.from_folder(folder, fp16, "cpu")
    odd = Variant(name="nf4", kind="nf4", tiers=["edge"], memory_gb=1)
    with pytest.raises(ModelUnavailable, match="no upscale loader"):
        UpscalePipeline.from_folder(folder, odd, "cpu")
