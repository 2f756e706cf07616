"""The generative ops' params and routing: pure schema logic, no torch."""

from __future__ import annotations

import pytest

import jobs.ops.generative  # noqa: F401  (registers the family until jobs.ops does)
from jobs.errors import SchemaError
from jobs.ops import get_op
from jobs.ops.generative import InpaintParams, KontextEditParams
from jobs.schema import Recipe, Step
from jobs.tiers import route


def test_defaults_name_a_stable_model_and_a_full_quality_budget() -> None:
    params = get_op("kontext_edit").validate({"prompt": "make the sky red"})
    assert isinstance(params, KontextEditParams)
    assert params.model == "kontext@stable"
    assert params.steps == 28 and params.max_side == 1024
    assert params.preview_side < params.max_side


@pytest.mark.parametrize(
    ("op", "raw", "complaint"),
    [
        ("kontext_edit", {"prompt": ""}, "prompt"),
        ("kontext_edit", {"prompt": "x" * 2001}, "prompt"),
        ("kontext_edit", {}, "prompt"),
        ("kontext_edit", {"prompt": "p", "steps": 0}, "steps"),
        ("kontext_edit", {"prompt": "p", "steps": 101}, "steps"),
        ("kontext_edit", {"prompt": "p", "max_side": 32}, "max_side"),
        ("kontext_edit", {"prompt": "p", "model": "../etc/passwd"}, "model"),
        ("kontext_edit", {"prompt": "p", "model": "kontext@"}, "model"),
        # FLUX is guidance-distilled: a negative prompt would be silently ignored.
        ("kontext_edit", {"prompt": "p", "negative_prompt": "blur"}, "negative_prompt"),
        ("ip2p_edit", {"prompt": "p", "image_guidance": -1}, "image_guidance"),
        ("inpaint", {"prompt": "p", "strength": 0}, "strength"),
        ("inpaint", {"prompt": "p", "box": [10, 10, 5, 20]}, "box"),
        ("inpaint", {"prompt": "p", "box": [0, 0, 10]}, "box"),
        ("inpaint", {"prompt": "p", "box": [-1, 0, 10, 10]}, "box"),
        ("qwen_edit", {"prompt": "p", "seed": 3}, "seed"),
    ],
)
def test_bad_params_are_refused_at_the_boundary(op: str, raw: dict, complaint: str) -> None:
    with pytest.raises(SchemaError, match=complaint):
        get_op(op).validate(raw)


def test_a_box_is_left_top_right_bottom() -> None:
    params = get_op("inpaint").validate({"prompt": "a cat", "box": [1, 2, 30, 40]})
    assert isinstance(params, InpaintParams)
    assert params.box == (1, 2, 30, 40)


def test_model_refs_take_a_version_or_an_alias() -> None:
    for ref in ("kontext", "kontext@1.0", "kontext@canary", "flux-fill@tiny"):
        assert get_op("inpaint").validate({"prompt": "p", "model": ref})


@pytest.mark.parametrize(
    ("op", "tier"),
    [("ip2p_edit", "edge"), ("inpaint", "edge"), ("kontext_edit", "a10"), ("qwen_edit", "a10")],
)
def test_routing_picks_the_smallest_card_that_holds_a_variant(op: str, tier: str) -> None:
    recipe = Recipe(steps=[Step(op=op, params={"prompt": "p"})])
    assert route(recipe).name == tier


def test_a_recipe_mixing_classic_and_generative_steps_goes_to_the_gpu_tier() -> None:
    recipe = Recipe(
        steps=[
            Step(op="auto_levels"),
            Step(op="kontext_edit", params={"prompt": "remove the scratches"}),
        ]
    )
    assert route(recipe).name == "a10"


def test_every_generative_op_needs_a_gpu() -> None:
    for op in ("kontext_edit", "qwen_edit", "ip2p_edit", "inpaint"):
        spec = get_op(op)
        assert spec.family == "generative"
        assert spec.needs.cpu is False and spec.needs.vram_gb
