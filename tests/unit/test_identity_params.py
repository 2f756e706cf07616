"""`identity_portrait`'s params, bounds and routing: pure schema logic, no torch."""

from __future__ import annotations

from typing import Any

import pytest

import jobs.ops.identity  # noqa: F401  (registers the op until jobs.ops imports it)
from jobs.errors import SchemaError
from jobs.ops import get_op
from jobs.ops.identity import SAME_PERSON, IdentityPortraitParams
from jobs.schema import Recipe, Step
from jobs.tiers import DEFAULT_TIERS, route

PROMPT = {"prompt": "a watercolor portrait"}


def test_defaults_are_instantids_and_gate_on_the_same_person_threshold() -> None:
    params = get_op("identity_portrait").validate(PROMPT)
    assert isinstance(params, IdentityPortraitParams)
    assert params.model == "instantid-sdxl@stable"
    assert (params.identity_strength, params.control_strength) == (0.8, 0.8)
    assert params.pose == "reference"
    assert params.min_identity == SAME_PERSON == 0.363
    assert params.max_rerenders == 2 and params.on_mismatch == "fail"
    assert params.max_side == 1024 and params.steps == 30 and params.guidance == 5.0
    assert get_op("identity_portrait").family == "identity"


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ({}, "prompt"),
        ({"identity_strength": 1.6}, "identity_strength"),
        ({"identity_strength": -0.1}, "identity_strength"),
        ({"control_strength": 2.0}, "control_strength"),
        ({"pose": "left"}, "pose"),
        ({"min_identity": 1.2}, "min_identity"),
        ({"max_rerenders": 6}, "max_rerenders"),
        ({"max_rerenders": -1}, "max_rerenders"),
        ({"on_mismatch": "retry"}, "on_mismatch"),
        ({"max_side": 32}, "max_side"),
        ({"model": "bad model"}, "model"),
        ({"seed": 3}, "seed"),  # the job's seed, not a param
    ],
)
def test_out_of_bounds_params_are_schema_errors_naming_the_field(
    raw: dict[str, Any], complaint: str
) -> None:
    body = raw if "prompt" in raw or not raw else {**PROMPT, **raw}
    with pytest.raises(SchemaError, match=complaint):
        get_op("identity_portrait").validate(body)


def test_a_pose_photo_and_a_lenient_gate_are_accepted() -> None:
    params = get_op("identity_portrait").validate(
        {**PROMPT, "pose": "image", "min_identity": 0, "on_mismatch": "best", "max_rerenders": 0}
    )
    assert isinstance(params, IdentityPortraitParams)
    assert params.pose == "image" and params.min_identity == 0.0


def test_routing_sends_it_to_the_a10_tier_not_an_8_gb_card() -> None:
    recipe = Recipe(steps=[Step(op="identity_portrait", params=PROMPT)])
    assert route(recipe).name == "a10"
    edge = next(t for t in DEFAULT_TIERS if t.name == "edge")
    cpu = next(t for t in DEFAULT_TIERS if t.name == "cpu")
    assert not edge.can_run("identity_portrait", PROMPT)
    assert not cpu.can_run("identity_portrait", PROMPT)
