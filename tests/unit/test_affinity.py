"""Model-aware claiming, the pure parts: which models a recipe loads, which live worker a
cold job goes to, and direct queue names."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import Recipe, Step
from jobs.schema import model_refs
from jobs.settings import Settings
from transport.direct import direct_queue, split_direct
from workers.affinity import Peer, peers_for

QUEUE = "a10.final"


def _recipe(*steps: tuple[str, dict[str, Any]]) -> Recipe:
    return Recipe(steps=[Step(op=op, params=params) for op, params in steps])


def test_a_recipe_loads_the_models_its_local_steps_name_each_once() -> None:
    recipe = _recipe(
        ("denoise", {}),
        ("kontext_edit", {"prompt": "p"}),
        ("upscale", {"scale": 2, "model": "slim"}),
        ("kontext_edit", {"prompt": "again"}),
        ("ip2p_edit", {"prompt": "p", "model": "ip2p@v2"}),
    )
    assert model_refs(recipe) == ["kontext@stable", "esrgan-slim-x2", "ip2p@v2"]


def test_classic_and_hosted_steps_load_no_model() -> None:
    recipe = _recipe(("denoise", {}), ("gemini_edit", {"prompt": "p"}), ("sharpen", {}))
    assert model_refs(recipe) == []


def _beat(resident: list[str], holding: int = 0, slots: int = 1, **more: Any) -> dict[str, Any]:
    return {
        "queues": [QUEUE],
        "ready": True,
        "slots": slots,
        "holding": [f"j{n}" for n in range(holding)],
        "resident": resident,
        **more,
    }


def test_a_cold_job_goes_to_the_warmest_worker_with_room_first() -> None:
    beats = {
        "here": _beat([]),
        "busy": _beat(["a", "b"], holding=2),
        "half": _beat(["a"]),
        "warm": _beat(["b", "a"], holding=1),
        "cold": _beat(["c"]),
    }
    peers = peers_for(beats, ["a", "b"], QUEUE, here=0, worker="here", backlog=1)
    assert peers == [Peer("warm", 2, 1), Peer("half", 1, 2)]


def test_no_peer_unless_it_holds_more_than_here() -> None:
    beats = {"here": _beat(["a"]), "other": _beat(["a"])}
    assert peers_for(beats, ["a"], QUEUE, here=1, worker="here", backlog=1) == []
    assert peers_for(beats, ["a", "b"], QUEUE, here=1, worker="here", backlog=1) == []


@pytest.mark.parametrize(
    "beat",
    [
        _beat(["a"], queues=["a10.preview"]),  # another lane
        _beat(["a"], queues=["edge.final"]),  # another tier
        _beat(["a"], ready=False),  # not consuming yet
        _beat(["a"], holding=1, slots=1),  # busy, and no backlog allowed
        {"queues": [QUEUE], "holding": []},  # an older worker that advertises nothing
    ],
)
def test_workers_that_cannot_take_the_job_are_no_peers(beat: dict[str, Any]) -> None:
    assert peers_for({"w": beat}, ["a"], QUEUE, here=0, worker="here", backlog=0) == []


def test_a_busy_worker_takes_one_more_with_the_default_backlog() -> None:
    beats = {"w": _beat(["a"], holding=1, slots=1)}
    assert peers_for(beats, ["a"], QUEUE, here=0, worker="here", backlog=1) == [Peer("w", 1, 1)]


def test_direct_queue_names_round_trip() -> None:
    name = direct_queue(QUEUE, "a10-final-7@gpu-node.at.example")
    assert split_direct(name) == (QUEUE, "a10-final-7@gpu-node.at.example")
    with pytest.raises(ValueError, match="not a direct queue"):
        split_direct(QUEUE)


def test_model_affinity_is_on_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().model_affinity
    monkeypatch.setenv("DARKROOM_MODEL_AFFINITY", "0")
    assert not Settings().model_affinity
