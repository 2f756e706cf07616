"""Generative edits through a real Redis and real Celery workers, on tiny models.

The workers play GPU tiers on this CPU: they pull the tiny models from a real model store
(published by the `tiny_models` fixture) through the same loading code real weights use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, Lane, OutputSpec, Recipe, Step, route
from jobs.states import ErrorCode, JobState
from testbed.workers import WorkerFactory, run_jobs
from transport.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

SIZE = {"max_side": 96, "preview_side": 64, "steps": 3, "preview_steps": 2}
CASES: dict[str, dict[str, Any]] = {
    "kontext_edit": {"prompt": "make it a watercolor", **SIZE},
    "qwen_edit": {"prompt": "make the sky purple", "model": "qwen-edit@stable", **SIZE},
    "ip2p_edit": {"prompt": "turn it into a sketch", **SIZE},
    "inpaint": {"prompt": "a red balloon", "box": [10, 10, 60, 40], **SIZE},
}


def photo(tmp_path: Path) -> str:
    path = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((150, 100)).save(path)
    return path.resolve().as_uri()


@pytest.mark.parametrize(
    "tier, ops", [("a10", ["kontext_edit", "qwen_edit"]), ("edge", ["ip2p_edit", "inpaint"])]
)
def test_preview_and_final_per_op_through_the_queue(
    tier: str,
    ops: list[str],
    workers: WorkerFactory,
    redis_client: redis.Redis,
    model_env: dict[str, str],
    tmp_path: Path,
) -> None:
    src = photo(tmp_path)
    for op in ops:
        assert route(Recipe(steps=[Step(op=op, params=CASES[op])])).name == tier
    workers.start(tier=tier, lane="both", name=f"gen-{tier}", **model_env)
    store = JobStore(redis_client)

    def job(op: str, mode: Lane, key: str, seed: int = 7) -> Job:
        return Job(
            input=src,
            recipe=Recipe(steps=[Step(op=op, params=CASES[op])]),
            mode=mode,
            seed=seed,
            output=OutputSpec(format="png", key=key),
        )

    jobs = []
    for op in ops:
        jobs += [
            job(op, Lane.FINAL, f"{op}/final-a"),
            job(op, Lane.FINAL, f"{op}/final-b"),
            job(op, Lane.FINAL, f"{op}/final-seed8", seed=8),
            job(op, Lane.PREVIEW, f"{op}/preview"),
        ]
    records = {r.id: r for r in run_jobs(store, jobs, timeout=240)}
    for op in ops:
        out = tmp_path / "out" / op
        final_a, final_b, final_8, preview = (
            records[j.id] for j in jobs if (j.recipe.steps[0].op == op)
        )
        for record in (final_a, final_b, final_8, preview):
            assert record.state is JobState.SUCCEEDED, record
        with Image.open(out / "final-a.png") as a, Image.open(out / "preview.png") as p:
            assert a.mode == "RGB" and max(a.size) == 96
            assert abs(a.width / a.height - 1.5) < 0.05, "aspect kept, no square crop"
            assert max(p.size) == 64 and abs(p.width / p.height - 1.5) < 0.06
        same = (out / "final-a.png").read_bytes() == (out / "final-b.png").read_bytes()
        assert same, f"{op}: the same seed must give the same image"
        assert (out / "final-a.png").read_bytes() != (out / "final-seed8.png").read_bytes()
        # the model was loaded by the first final job; later ones found it resident
        loads = sorted(
            r.result["timings"]["model_load_s"] for r in (final_a, final_b, final_8) if r.result
        )
        assert loads[0] == 0.0 and loads[1] == 0.0, loads


def test_a_missing_model_fails_the_job_naming_it(
    workers: WorkerFactory, redis_client: redis.Redis, model_env: dict[str, str], tmp_path: Path
) -> None:
    workers.start(tier="edge", lane="final", name="gen-missing", **model_env)
    store = JobStore(redis_client)
    bad = Job(
        input=photo(tmp_path),
        recipe=Recipe(
            steps=[Step(op="ip2p_edit", params={**CASES["ip2p_edit"], "model": "ip2p-v9@stable"})]
        ),
    )
    (record,) = run_jobs(store, [bad], timeout=120)
    assert record.state is JobState.FAILED
    assert record.error_code is ErrorCode.MODEL_UNAVAILABLE
    assert "ip2p-v9" in (record.error_message or "")


def test_previews_arriving_together_run_as_a_batch_on_a_both_lanes_worker(
    workers: WorkerFactory, redis_client: redis.Redis, model_env: dict[str, str], tmp_path: Path
) -> None:
    src = photo(tmp_path)
    workers.start(
        tier="a10",
        lane="both",
        name="gen-batch",
        DARKROOM_PREVIEW_BATCH_MS="30",
        DARKROOM_PREVIEW_SLOTS="4",
        **model_env,
    )
    store = JobStore(redis_client)

    def preview(key: str, seed: int) -> Job:
        params = {**CASES["kontext_edit"], "prompt": f"make it a watercolor, take {seed}"}
        return Job(
            input=src,
            recipe=Recipe(steps=[Step(op="kontext_edit", params=params)]),
            mode=Lane.PREVIEW,
            seed=seed,
            output=OutputSpec(format="png", key=key),
        )

    # The first preview loads the model (alone: a preview that loads holds the card).
    (warm,) = run_jobs(store, [preview("warm", 1)], timeout=240)
    assert warm.state is JobState.SUCCEEDED, warm
    burst = [preview(f"burst-{n}", 10 + n) for n in range(4)]
    records = run_jobs(store, burst, timeout=240)

    assert all(r.state is JobState.SUCCEEDED for r in records), records
    sizes = [r.result["info"]["kontext_edit.batch_size"] for r in records if r.result]
    assert max(sizes) > 1, sizes
    # each batch of k reported by all k of its jobs
    assert all(sizes.count(k) % k == 0 for k in set(sizes)), sizes
    seeds = [r.result["info"]["kontext_edit.seed"] for r in records if r.result]
    assert seeds == [10, 11, 12, 13]
    outputs = {(tmp_path / "out" / f"burst-{n}.png").read_bytes() for n in range(4)}
    assert len(outputs) == 4, "each job its own image"
