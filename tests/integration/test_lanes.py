"""One card, two lanes, through a real Redis and a real `darkroom worker --lane both`:
one model-owning process serves the preview and final queues of its tier; a preview
overtakes a running final between its denoising steps, and the final's output is the
one it renders alone. A SIGKILL of that process loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, Lane, OutputSpec, Recipe, Step
from jobs.states import JobState
from testbed.workers import WorkerFactory, run_jobs, wait_until
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore, Submission
from workers.heartbeat import live_workers

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

# A final of a few seconds on this CPU (its steps are tens of ms at 1024 px), a preview
# of a few tens of ms.
FINAL = {"prompt": "make it a watercolor", "max_side": 1024, "steps": 60}
PREVIEW = {"prompt": "a sketch", "max_side": 1024, "preview_side": 64, "preview_steps": 2}


def photo(tmp_path: Path) -> str:
    path = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((1200, 800)).save(path)
    return path.resolve().as_uri()


def kontext(src: str, mode: Lane, key: str, params: dict[str, Any], seed: int = 5) -> Job:
    return Job(
        input=src,
        recipe=Recipe(steps=[Step(op="kontext_edit", params=params)]),
        mode=mode,
        seed=seed,
        output=OutputSpec(format="png", key=key),
    )


def record(store: JobStore, job_id: str) -> JobRecord:
    found = store.get(job_id)
    assert found is not None
    return found


def stepping(store: JobStore, job_id: str) -> bool:
    """The job is running and has finished at least one denoising step."""
    found = record(store, job_id)
    return found.state is JobState.RUNNING and float(found.progress or 0) > 0


def beat_pid(client: redis.Redis, prefix: str) -> int:
    for name, beat in live_workers(client, Keyspace()).items():
        if name.startswith(prefix):
            return int(beat["pid"])
    raise AssertionError(f"no worker {prefix} beats")


def test_a_preview_overtakes_a_running_final_which_renders_the_same_bytes(
    workers: WorkerFactory, redis_client: redis.Redis, model_env: dict[str, str], tmp_path: Path
) -> None:
    src = photo(tmp_path)
    store = JobStore(redis_client)
    workers.start(tier="a10", lane="both", name="card", **model_env)
    # warm the model, so neither job below loads it
    run_jobs(store, [kontext(src, Lane.PREVIEW, "warm", PREVIEW)], timeout=120)

    final = kontext(src, Lane.FINAL, "final", FINAL)
    store.enqueue([Submission(final, "a10.final")])
    assert wait_until(lambda: stepping(store, final.id), 120), record(store, final.id)
    preview = kontext(src, Lane.PREVIEW, "preview", PREVIEW, seed=9)
    store.enqueue([Submission(preview, "a10.preview")])
    assert wait_until(lambda: record(store, preview.id).state.terminal, 120)

    p = record(store, preview.id)
    assert p.state is JobState.SUCCEEDED, p
    assert record(store, final.id).state is JobState.RUNNING, "the preview did not wait for it"
    assert wait_until(lambda: record(store, final.id).state.terminal, 180)
    f = record(store, final.id)
    assert f.state is JobState.SUCCEEDED and f.result, f
    paused = f.result["info"]["paused_for_previews"]
    assert paused["times"] >= 1, f.result["info"]

    # the same final alone: the same bytes
    (again,) = run_jobs(store, [kontext(src, Lane.FINAL, "again", FINAL)], timeout=180)
    assert again.state is JobState.SUCCEEDED and again.result
    assert "paused_for_previews" not in again.result["info"]
    out = tmp_path / "out"
    assert (out / "final.png").read_bytes() == (out / "again.png").read_bytes()
    # one process served both queues, with one resident copy of the model
    (beat,) = live_workers(redis_client, Keyspace()).values()
    assert set(beat["queues"]) == {"a10.preview", "a10.final"}


def test_sigkill_of_the_model_owning_process_loses_neither_the_final_nor_a_waiting_preview(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A classic final (one long op, so one long step) holds the card; a preview waits
    for it in the scheduler's hands. The process dies: both run again, once each."""
    big = tmp_path / "big.png"
    Image.fromarray(data.astronaut()).resize((1200, 1200)).save(big)
    store = JobStore(redis_client)
    workers.start(lane="both", name="card")
    final = Job(
        input=big.resolve().as_uri(),
        recipe=Recipe(steps=[Step(op="denoise", params={"strength": 15})]),  # ~4 s here
        output=OutputSpec(format="png", key="final"),
    )
    store.enqueue([Submission(final, "cpu.final")])
    assert wait_until(lambda: record(store, final.id).state is JobState.RUNNING, 60)
    preview = Job(
        input=big.resolve().as_uri(),
        recipe=Recipe(steps=[Step(op="resize", params={"max_side": 64})]),
        mode=Lane.PREVIEW,
        output=OutputSpec(format="png", key="preview"),
    )
    store.enqueue([Submission(preview, "cpu.preview")])
    assert wait_until(lambda: record(store, preview.id).state is JobState.RUNNING, 60)
    first = record(store, final.id)
    if first.state is not JobState.RUNNING:
        pytest.fail(f"the final ended before the kill: make it longer ({first.result})")

    os.kill(beat_pid(redis_client, "card-both@"), signal.SIGKILL)  # the supervisor lives

    for job in (final, preview):
        assert wait_until(lambda j=job: record(store, j.id).state.terminal, 180)  # type: ignore[misc]
        done = record(store, job.id)
        assert done.state is JobState.SUCCEEDED and done.attempts == 2, done
    out = tmp_path / "out"
    assert (out / "final.png").exists() and (out / "preview.png").exists()
    # the supervisor started the model-owning process again under its name
    assert wait_until(lambda: len(live_workers(redis_client, Keyspace())) == 1, 30)
    beat = json.dumps(live_workers(redis_client, Keyspace()))
    assert "card-both@" in beat


def test_the_render_time_limit_holds_on_the_threads_pool(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Celery's time limits need prefork: the model-owning process checks the limit
    itself between steps, fails the job `timeout`, and serves the next one."""
    side = tmp_path / "side.png"
    Image.fromarray(data.astronaut()).resize((700, 700)).save(side)
    store = JobStore(redis_client)
    workers.start(lane="both", name="card", DARKROOM_RENDER_TIME_LIMIT_S="1")
    endless = Job(
        input=side.resolve().as_uri(),
        recipe=Recipe(steps=[Step(op="denoise", params={"strength": 15})] * 30),
        output=OutputSpec(format="png", key="endless"),
    )
    quick = Job(
        input=side.resolve().as_uri(),
        recipe=Recipe(steps=[Step(op="resize", params={"max_side": 64})]),
        output=OutputSpec(format="png", key="quick"),
    )
    late, fine = run_jobs(store, [endless, quick], timeout=120)
    assert late.state is JobState.FAILED and late.error_code is not None, late
    assert late.error_code.value == "timeout" and "exceeded 1 s" in (late.error_message or "")
    assert fine.state is JobState.SUCCEEDED, fine
    assert not (tmp_path / "out" / "endless.png").exists()
