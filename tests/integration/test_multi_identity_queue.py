"""`multi_identity` through a real Redis and a real Celery worker, on the tiny UNO model.

Routing picks the tier; a worker of that tier (on this CPU) pulls the tiny UNO model,
its LoRA and preview decoder from a real model store. Random weights draw no face, so
every final render fails the multi-face gate: the tests show the re-render loop (3
attempts, 3 seeds, each attempt's similarity matrix and assignment recorded), both
ways a failed gate ends a job, a preview, and bad references failing their own job.
Whether a trained model's image *passes* needs real weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from jobs import Job, Lane, OutputSpec, Recipe, Step, route
from jobs.states import ErrorCode, JobState
from testbed.workers import WorkerFactory, run_jobs
from transport.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

PARAMS = {
    "prompt": "two friends at a cafe",
    "max_side": 96,
    "preview_side": 64,
    "steps": 2,
    "reference_side": 64,
    "aspect_ratio": "3:2",
}


def save(image: Image.Image, path: Path) -> str:
    image.save(path)
    return path.resolve().as_uri()


def test_multi_identity_through_the_queue_previews_rerenders_and_fails_cleanly(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    model_env: dict[str, str],
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
    tmp_path: Path,
) -> None:
    her = save(astronaut, tmp_path / "astronaut.png")
    hopper = save(grace_hopper, tmp_path / "hopper.png")
    cup = save(coffee, tmp_path / "coffee.png")

    def job(key: str, extras: list[str], mode: Lane = Lane.FINAL, **raw: Any) -> Job:
        step = Step(op="multi_identity", params={**PARAMS, **raw})
        return Job(
            input=her,
            extra_inputs=extras,
            recipe=Recipe(steps=[step]),
            mode=mode,
            seed=21,
            output=OutputSpec(format="png", key=key),
        )

    best, strict, preview, faceless, crowd = jobs = [
        job("best", [hopper], on_mismatch="best"),
        job("strict", [hopper]),
        job("preview", [hopper], Lane.PREVIEW),
        job("faceless", [cup]),
        job("crowd", [hopper, her, hopper, her]),
    ]
    assert route(best.recipe).name == "a10"
    workers.start(tier="a10", lane="both", name="multi-identity-a10", **model_env)
    records = {r.id: r for r in run_jobs(JobStore(redis_client), jobs)}

    # on_mismatch=best: 3 renders, 3 seeds (the job's first), a 2-row matrix each
    done = records[best.id]
    assert done.state is JobState.SUCCEEDED, done
    assert done.result is not None
    info = done.result["info"]
    assert info["multi_identity.attempts"] == 3
    seeds = info["multi_identity.identity_seeds"]
    assert seeds[0] == 21 and len(set(seeds)) == 3
    matches = info["multi_identity.identity_matches"]
    assert len(matches) == 3
    assert all(len(m["similarity"]) == 2 and m["assignment"] == [None, None] for m in matches)
    assert info["multi_identity.identity_passed"] is False
    assert info["multi_identity.adapters"] == ["lora"] and info["multi_identity.people"] == 2
    with Image.open(tmp_path / "out" / "best.png") as out:
        assert out.size == (96, 64)

    # the default, on_mismatch=fail: no face in any render -> face_not_found, seeds listed
    failed = records[strict.id]
    assert failed.state is JobState.FAILED
    assert failed.error_code is ErrorCode.FACE_NOT_FOUND
    assert "any of 3 renders" in (failed.error_message or "")
    assert all(f"seed {s}" in (failed.error_message or "") for s in seeds)

    # a preview renders once, smaller, unchecked
    drafted = records[preview.id]
    assert drafted.state is JobState.SUCCEEDED
    assert drafted.result["info"]["multi_identity.identity_checked"] is False  # type: ignore[index]
    with Image.open(tmp_path / "out" / "preview.png") as small:
        assert small.size == (64, 43)

    # a reference with no face, and five people: each fails as its own job, saying why
    nothing = records[faceless.id]
    assert nothing.state is JobState.FAILED
    assert nothing.error_code is ErrorCode.FACE_NOT_FOUND
    assert (nothing.error_message or "").startswith("reference 2 (extra input 1): no face")
    too_many = records[crowd.id]
    assert too_many.state is JobState.FAILED
    assert too_many.error_code is ErrorCode.INPUT_INVALID
    assert "1-4 reference photos" in (too_many.error_message or "")
