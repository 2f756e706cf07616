"""The onnx variant of FLUX.1 Kontext: exported from a published torch model, published
with sha256 and a parity score, and run by the pipeline through onnxruntime.

Parity, measured on the tiny model (2 cores, torch 2.13, onnxruntime 1.32): one
transformer call differs from torch by ~1e-6; a whole seeded edit by at most
~0.001 of an 8-bit level before rounding (PSNR > 100 dB, reported as the 100 dB cap).
The tests allow 1 level after rounding to 8 bits and 1e-4 per transformer output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import jobs.ops.generative  # noqa: F401  (registers the family until jobs.ops does)
from jobs.errors import InputInvalid, ModelUnavailable
from jobs.ops import get_op
from pipelines.base import OpContext

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

pytest.importorskip("diffusers")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402

from darkroom.models import models  # noqa: E402
from model_store import Manifest  # noqa: E402
from pipelines.generative import OPS  # noqa: E402
from pipelines.generative.exported import OnnxRuntimeTransformer  # noqa: E402
from pipelines.generative.onnx_export import example_inputs  # noqa: E402
from pipelines.generative.publish_exported import Target, publish_onnx  # noqa: E402
from tests.fixtures.tiny_models import ONNX_KONTEXT  # noqa: E402
from workers.resident import ResidentModels  # noqa: E402

LEVELS = 1
TRANSFORMER_TOLERANCE = 1e-4


def edit(models: ResidentModels, image: Image.Image, seed: int = 3) -> tuple[np.ndarray, Any]:
    params = get_op("kontext_edit").validate(
        {"prompt": "make it a watercolor", "model": ONNX_KONTEXT, "max_side": 96, "steps": 3}
    )
    ctx = OpContext(models=models, seed=seed)
    out = OPS["kontext_edit"](image, params, ctx)
    return np.asarray(out, dtype=np.int16), ctx.info


@pytest.fixture
def on_tier(tiny_models: Any, onnx_kontext: Manifest) -> Any:
    """Resident caches on CPU playing a tier, with `kontext-onnx@tiny` published."""
    made: list[ResidentModels] = []

    def make(tier: str) -> ResidentModels:
        made.append(ResidentModels(tiny_models.store, tier, "cpu", budget_gb=8.0))
        return made[-1]

    yield make
    for cache in made:
        cache.clear()


def test_the_onnx_variant_is_published_first_for_its_tiers_with_hashes_and_a_score(
    tiny_models: Any, onnx_kontext: Manifest
) -> None:
    store = tiny_models.store
    onnx = onnx_kontext.variants[0]
    assert (onnx.name, onnx.kind, onnx.tiers) == ("onnx", "onnx", ["cpu"])
    assert [f.path for f in onnx.files] == ["onnx/transformer.onnx", "onnx/transformer.onnx.data"]
    assert all(f in onnx_kontext.files for f in onnx.files)
    # the source's variants are kept: the cpu tier runs onnx, the others what they ran
    source = store.resolve("kontext@tiny")
    assert onnx_kontext.variants[1:] == source.variants
    assert onnx_kontext.variant_for("cpu").kind == "onnx"
    assert onnx_kontext.variant_for("a10").kind == "fp32"
    assert onnx_kontext.components == source.components
    score = onnx.options["score"]
    assert score["against"] == "fp32 torch" and score["psnr_db"] >= 60
    assert score["max_abs_diff"] < LEVELS
    assert score["transformer_max_abs_diff"] < TRANSFORMER_TOLERANCE
    assert store.verify(onnx_kontext.ref) == []


def test_the_graph_has_symbolic_token_axes_and_no_float64_for_tensorrt(
    tiny_models: Any, onnx_kontext: Manifest
) -> None:
    import onnx

    local = tiny_models.store.pull(onnx_kontext.ref)
    graph = onnx.load(str(local.path / "onnx/transformer.onnx"), load_external_data=False)
    inputs = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in graph.graph.input
    }
    assert inputs["hidden_states"][:2] == [1, "image_tokens"]
    assert inputs["txt_ids"][0] == "text_tokens"
    typed = onnx.shape_inference.infer_shapes(graph).graph
    tensors = [*typed.value_info, *typed.input, *typed.output]
    assert all(t.type.tensor_type.elem_type != onnx.TensorProto.DOUBLE for t in tensors)


def test_same_seed_same_edit_from_onnxruntime_and_torch(on_tier: Any) -> None:
    # The cpu tier runs the onnx variant, the a10 tier fp32 torch, of the same release.
    onnx_models, torch_models = on_tier("cpu"), on_tier("a10")
    for size in ((120, 80), (64, 112)):  # the token axes are dynamic: two shapes, one graph
        image = Image.new("RGB", size, (40, 90, 160))
        image.paste((220, 180, 30), (10, 10, size[0] // 2, size[1] // 2))
        got, got_info = edit(onnx_models, image)
        want, want_info = edit(torch_models, image)
        assert (got_info["variant"], want_info["variant"]) == ("onnx", "fp32")
        assert got.shape == want.shape
        assert int(np.abs(got - want).max()) <= LEVELS, size
        assert got.std() > 1, "a real image came out, not a flat fill"
    pipe = onnx_models.get(ONNX_KONTEXT).pipe
    assert isinstance(pipe.transformer, OnnxRuntimeTransformer)
    assert sum(p.numel() for p in pipe.transformer.parameters()) == 0, "no torch weights loaded"


def test_the_exported_transformer_refuses_what_it_cannot_run(on_tier: Any) -> None:
    transformer = on_tier("cpu").get(ONNX_KONTEXT).pipe.transformer
    inputs = example_inputs(dict(transformer.config))
    out = transformer(**inputs, return_dict=False)[0]
    assert out.shape == inputs["hidden_states"].shape
    doubled = {
        k: torch.cat([v, v]) if k not in ("img_ids", "txt_ids") else v for k, v in inputs.items()
    }
    with pytest.raises(InputInvalid, match="one image at a time"):
        transformer(**doubled)
    with pytest.raises(InputInvalid, match="scale"):
        transformer(**inputs, joint_attention_kwargs={"scale": 0.5})


def test_a_model_without_a_flux_kontext_transformer_is_refused(tiny_models: Any) -> None:
    with pytest.raises(ModelUnavailable, match="StableDiffusionInstructPix2PixPipeline"):
        publish_onnx(tiny_models.store, "ip2p@tiny", Target(version="tiny-onnx"))
    assert tiny_models.store.versions("ip2p") == ["tiny"]


def test_the_command_refuses_an_export_under_its_gate_and_publishes_nothing(
    tiny_models: Any, tmp_path: Path
) -> None:
    uri = tiny_models.settings.model_store_uri()
    argv = ["--store", uri, "--cache", str(tmp_path / "cache"), "export-onnx", "kontext@tiny"]
    argv += ["--version", "gated", "--min-psnr", "1000", "--side", "64", "--steps", "2"]
    result = CliRunner().invoke(models, argv)
    assert result.exit_code == 1, result.output
    assert "under the 1000 dB gate; nothing was published" in result.output
    assert "gated" not in tiny_models.store.versions("kontext")
