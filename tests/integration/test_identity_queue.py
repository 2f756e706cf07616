"""`identity_portrait` through a real Redis and a real Celery worker, on the tiny model.

Routing picks the tier; a worker of that tier (on this CPU) pulls the tiny InstantID
model, its face encoder and preview decoder from a real model store. Random weights
draw no face, so every final render fails the identity gate: the tests show the
re-render loop (3 attempts, 3 distinct seeds, 3 scores recorded) and both ways a
failed gate ends a job. Whether a trained model's portrait *passes* needs real weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image, ImageOps

import jobs.ops.identity  # noqa: F401  (registers the op until jobs.ops imports it)
from jobs import Job, Lane, OutputSpec, Recipe, Step, route
from jobs.states import ErrorCode, JobState
from testbed.workers import WorkerFactory, run_jobs
from transport.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

PARAMS = {"prompt": "a portrait", "max_side": 96, "preview_side": 64, "steps": 2}


def save(image: Image.Image, path: Path) -> str:
    image.save(path)
    return path.resolve().as_uri()


def test_portraits_through_the_queue_rerender_and_end_as_the_job_asked(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    model_env: dict[str, str],
    astronaut: Image.Image,
    coffee: Image.Image,
    tmp_path: Path,
) -> None:
    face = save(astronaut.crop((60, 0, 360, 200)), tmp_path / "face.png")
    pose = save(ImageOps.mirror(astronaut.crop((60, 0, 360, 200))), tmp_path / "pose.png")
    cup = save(coffee, tmp_path / "coffee.png")

    def job(key: str, mode: Lane = Lane.FINAL, src: str = face, **raw: Any) -> Job:
        extras = raw.pop("extra_inputs", [])
        step = Step(op="identity_portrait", params={**PARAMS, **raw})
        return Job(
            input=src,
            extra_inputs=extras,
            recipe=Recipe(steps=[step]),
            mode=mode,
            seed=11,
            output=OutputSpec(format="png", key=key),
        )

    best, strict, posed, preview, faceless = jobs = [
        job("best", on_mismatch="best"),
        job("strict"),
        job("posed", pose="image", min_identity=0, extra_inputs=[pose]),
        job("preview", Lane.PREVIEW),
        job("faceless", src=cup),
    ]
    assert route(best.recipe).name == "a10"
    workers.start(tier="a10", lane="both", name="identity-a10", **model_env)
    records = {r.id: r for r in run_jobs(JobStore(redis_client), jobs)}

    # on_mismatch=best: 3 renders, 3 seeds (the job's first), 3 scores; the job succeeds
    done = records[best.id]
    assert done.state is JobState.SUCCEEDED, done
    assert done.result is not None
    info = done.result["info"]
    assert info["identity_portrait.attempts"] == 3
    assert info["identity_portrait.identity_scores"] == [None, None, None]
    seeds = info["identity_portrait.identity_seeds"]
    assert seeds[0] == 11 and len(set(seeds)) == 3
    assert info["identity_portrait.identity_passed"] is False
    with Image.open(tmp_path / "out" / "best.png") as out:
        assert out.size == (96, 64)

    # the default, on_mismatch=fail: no face in any render -> face_not_found, seeds listed
    failed = records[strict.id]
    assert failed.state is JobState.FAILED
    assert failed.error_code is ErrorCode.FACE_NOT_FOUND
    assert "any of 3 renders" in (failed.error_message or "")
    assert all(f"seed {s}" in (failed.error_message or "") for s in seeds)

    # a pose photo as the last extra input; the gate off; a preview renders once, smaller
    assert records[posed.id].state is JobState.SUCCEEDED
    assert records[posed.id].result["info"]["identity_portrait.attempts"] == 1  # type: ignore[index]
    assert records[preview.id].state is JobState.SUCCEEDED
    with Image.open(tmp_path / "out" / "preview.png") as small:
        assert small.size == (64, 43)

    # a reference with no face fails as its own job, naming the image
    nothing = records[faceless.id]
    assert nothing.state is JobState.FAILED
    assert nothing.error_code is ErrorCode.FACE_NOT_FOUND
    assert (nothing.error_message or "").startswith("input image: no face")
