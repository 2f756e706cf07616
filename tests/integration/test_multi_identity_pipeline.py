"""`multi_identity` on the tiny UNO model: published with its LoRA, pulled from the store,
loaded by the worker's resident cache, run on CPU.

Random weights draw no faces, so these tests check the wiring a real model relies on:
every reference reaches the transformer as tokens at its UnoPE offset and steers the
render, the UNO-layout LoRA is converted and loaded by diffusers and scales per job,
seeds repeat, sizes keep the asked aspect, and the gate's loop records every attempt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from jobs.errors import ModelUnavailable
from jobs.ops import get_op
from jobs.ops.multi_identity import MultiIdentityParams
from jobs.schema import Lane
from pipelines.base import OpContext

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

from model_store import ModelStore  # noqa: E402
from pipelines.multi_identity import OPS, FluxUNOPipeline, MultiIdentity  # noqa: E402
from pipelines.multi_identity.positions import uno_ids  # noqa: E402
from pipelines.multi_identity.tiny import LORA_FILE, uno_lora_state  # noqa: E402
from workers.resident import ResidentModels  # noqa: E402

BUDGET = {
    "max_side": 96,
    "preview_side": 64,
    "steps": 2,
    "preview_steps": 2,
    "reference_side": 64,
}


def params(**raw: Any) -> MultiIdentityParams:
    parsed = get_op("multi_identity").validate({"prompt": "two friends", **BUDGET, **raw})
    assert isinstance(parsed, MultiIdentityParams)
    return parsed


def run(
    image: Image.Image, extras: list[Image.Image], raw: dict[str, Any], models: Any, **ctx: Any
) -> Image.Image:
    context = OpContext(models=models, extra_inputs=extras, **ctx)
    out = OPS["multi_identity"](image, params(**raw), context)
    out.info = dict(context.info)
    return out


def same(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_a_seed_repeats_its_image_at_the_asked_aspect_and_previews_are_drafts(
    resident: Any, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    gate_off = {"min_identity": 0, "aspect_ratio": "3:2"}
    a = run(astronaut, [grace_hopper], gate_off, resident, seed=7)
    b = run(astronaut, [grace_hopper], gate_off, resident, seed=7)
    c = run(astronaut, [grace_hopper], gate_off, resident, seed=8)
    assert a.size == (96, 64) and a.mode == "RGB"
    assert same(a, b) and not same(a, c)
    assert a.info["model"] == "umo-uno@tiny" and a.info["adapters"] == ["lora"]
    assert a.info["people"] == 2 and a.info["reference_side"] == 64
    assert a.info["attempts"] == 1 and a.info["identity_passed"] is True

    preview = run(astronaut, [grace_hopper], {}, resident, seed=7, lane=Lane.PREVIEW)
    assert preview.size == (64, 64) and preview.info["decoder"] == "tiny"
    assert preview.info["identity_checked"] is False and "identity_scores" not in preview.info
    assert preview.info["reference_side"] == 48, "references shrink with the preview"


def test_every_reference_reaches_the_transformer_at_its_own_offset(
    resident: Any, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    model = resident.get("umo-uno", Lane.FINAL)
    assert isinstance(model, MultiIdentity) and isinstance(model.pipe, FluxUNOPipeline)
    seen: list[dict[str, torch.Tensor]] = []

    def inputs(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen.append({k: kwargs[k].detach().clone() for k in ("hidden_states", "img_ids")})

    hook = model.pipe.transformer.register_forward_pre_hook(inputs, with_kwargs=True)
    try:
        run(astronaut, [grace_hopper], {"min_identity": 0}, resident, seed=3)
    finally:
        hook.remove()
    assert len(seen) == 2, "one transformer pass per step"
    target, reference = (96 // 16, 96 // 16), (64 // 16, 64 // 16)
    expected = uno_ids(target, [reference, reference])
    for step in seen:
        assert step["hidden_states"].shape == (1, 36 + 16 + 16, 64)
        assert torch.equal(step["img_ids"].cpu(), expected)
    # the reference tokens are the same clean latents at every step; the target's change
    assert torch.equal(seen[0]["hidden_states"][:, 36:], seen[1]["hidden_states"][:, 36:])
    assert not torch.equal(seen[0]["hidden_states"][:, :36], seen[1]["hidden_states"][:, :36])

    # other people give another image; so does the same people in another order
    gate_off = {"min_identity": 0}
    base = run(astronaut, [grace_hopper], gate_off, resident, seed=3)
    other = run(astronaut, [ImageOps.mirror(astronaut)], gate_off, resident, seed=3)
    swapped = run(grace_hopper, [astronaut], gate_off, resident, seed=3)
    assert not same(base, other) and not same(base, swapped)


def test_the_uno_layout_lora_is_converted_loaded_and_scaled_per_job(
    resident: Any, tiny_models: Any, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    model = resident.get("umo-uno", Lane.FINAL)
    transformer = model.pipe.transformer
    state = uno_lora_state(transformer)
    assert all(".processor." in key for key in state), "UNO's published layout"
    attention = transformer.transformer_blocks[0].attn
    qkv_up = state["double_blocks.0.processor.qkv_lora1.up.weight"]
    dim = qkv_up.shape[0] // 3
    # diffusers split UNO's fused q/k/v LoRA: one shared down, the up in thirds
    assert torch.equal(
        attention.to_q.lora_A["lora"].weight,
        state["double_blocks.0.processor.qkv_lora1.down.weight"],
    )
    assert torch.equal(attention.to_k.lora_B["lora"].weight, qkv_up[dim : 2 * dim])
    assert torch.equal(
        attention.add_v_proj.lora_B["lora"].weight,
        state["double_blocks.0.processor.qkv_lora2.up.weight"][2 * dim :],
    )
    single = transformer.single_transformer_blocks[0]
    assert torch.equal(
        single.proj_out.lora_A["lora"].weight,
        state["single_blocks.0.processor.proj_lora.down.weight"],
    )

    # lora_scale 0 renders exactly what the base model renders without the adapter
    gate_off = {"min_identity": 0}
    with_lora = run(astronaut, [grace_hopper], gate_off, resident, seed=5)
    scaled_off = run(astronaut, [grace_hopper], {**gate_off, "lora_scale": 0}, resident, seed=5)
    assert not same(with_lora, scaled_off)
    folder = tiny_models.folders["umo-uno"]
    base = MultiIdentity(FluxUNOPipeline.from_pretrained(folder), model.variant)
    base.pipe.set_progress_bar_config(disable=True)
    plain = run(astronaut, [grace_hopper], gate_off, _Only(base), seed=5)
    assert np.abs(np.asarray(plain, int) - np.asarray(scaled_off, int)).max() <= 1


class _Only:
    """A model cache holding one loaded model (the op asks `get(ref, lane)`)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get(self, ref: str, lane: Any = None) -> Any:
        return self.model


def test_a_lora_for_another_transformer_fails_the_load_clearly(
    tiny_models: Any, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    from pipelines.generative.tiny import tiny_variants

    store: ModelStore = tiny_models.store
    wrong = tmp_path / "wrong-lora"
    wrong.mkdir()
    state = uno_lora_state(tiny_models_transformer())
    state = {k: torch.cat([v, v], dim=-1) if k.endswith("down.weight") else v
             for k, v in state.items()}  # fmt: skip
    save_file(state, str(wrong / LORA_FILE))
    store.publish(wrong, "wrong-lora", "1", pipeline_class="FluxLoRA")
    store.publish(
        tiny_models.folders["umo-uno"],
        "umo-wrong",
        "1",
        variants=tiny_variants(store),
        components={"lora": "wrong-lora@1"},
    )
    models = ResidentModels(store, "a10", "cpu", budget_gb=8.0)
    with pytest.raises(ModelUnavailable, match="LoRA wrong-lora@1 does not load"):
        models.get("umo-wrong@1")


def tiny_models_transformer() -> torch.nn.Module:
    from pipelines.generative import tiny_parts

    return tiny_parts.flux_transformer(tiny_parts.FLUX_LATENT_CHANNELS * 4)


def test_two_linked_adapters_load_side_by_side_and_both_act(
    tiny_models: Any, resident: Any, tmp_path: Path, astronaut: Image.Image
) -> None:
    from safetensors.torch import save_file

    from pipelines.generative.tiny import tiny_variants

    store: ModelStore = tiny_models.store
    second = tmp_path / "second-lora"
    second.mkdir()
    state = {
        k: v.flip(0).contiguous() for k, v in uno_lora_state(tiny_models_transformer()).items()
    }
    save_file(state, str(second / LORA_FILE))
    store.publish(second, "second-lora", "1", pipeline_class="FluxLoRA")
    store.publish(
        tiny_models.folders["umo-uno"],
        "umo-two",
        "1",
        variants=tiny_variants(store),
        components={"lora": "umo-uno-lora@tiny", "lora_umo": "second-lora@1"},
    )
    models = ResidentModels(store, "a10", "cpu", budget_gb=8.0)
    try:
        two = models.get("umo-two@1")
        assert isinstance(two, MultiIdentity) and two.adapters == ["lora", "lora_umo"]
        assert two.pipe.get_active_adapters() == ["lora", "lora_umo"]
        gate_off = {"min_identity": 0}
        both = run(astronaut, [], {**gate_off, "model": "umo-two@1"}, models, seed=2)
        single = run(astronaut, [], gate_off, resident, seed=2)
        assert both.info["adapters"] == ["lora", "lora_umo"]
        assert not same(both, single), "the second adapter changes the render"
    finally:
        models.clear()


def test_the_lora_loads_onto_the_int8_weight_only_transformer(
    tiny_models: Any, resident: Any, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    int8 = ResidentModels(
        tiny_models.store, "a10", "cpu", budget_gb=8, preferred={"final": ["int8"]}
    )
    try:
        gate_off = {"min_identity": 0}
        quantized = run(astronaut, [grace_hopper], gate_off, int8, seed=4)
        full = run(astronaut, [grace_hopper], gate_off, resident, seed=4)
        assert quantized.info["variant"] == "int8" and quantized.info["adapters"] == ["lora"]
        assert quantized.size == full.size and not same(quantized, full)
        to_q = int8.get("umo-uno").pipe.transformer.transformer_blocks[0].attn.to_q
        assert "Int8" in type(to_q.get_base_layer().weight).__name__, "int8 base weights"
        assert to_q.lora_A["lora"].weight.dtype == torch.bfloat16, "the LoRA on top"
        off = run(astronaut, [grace_hopper], {**gate_off, "lora_scale": 0}, int8, seed=4)
        assert not same(quantized, off), "the adapter acts on the quantized layers"
    finally:
        int8.clear()
