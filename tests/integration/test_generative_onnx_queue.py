"""A kontext_edit job on the cpu tier, whose model's cpu variant is onnx, through a real
Redis and a real Celery worker: the worker pulls the release from the model store and
runs the transformer in onnxruntime.

Routing sends kontext_edit to a GPU tier (it needs VRAM for the full-size model); the
jobs here are queued on `cpu.final` directly, as an operator pointing a CPU pool at a
model with an onnx variant would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, Lane, OutputSpec, Recipe, Step, queue_name
from jobs.states import JobState
from model_store import Manifest
from testbed.workers import WorkerFactory, wait_until
from tests.fixtures.tiny_models import ONNX_KONTEXT
from transport.store import JobStore, Submission

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

PARAMS = {"prompt": "make it a watercolor", "model": ONNX_KONTEXT, "max_side": 96, "steps": 3}


def test_a_cpu_worker_runs_kontext_through_its_onnx_variant(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    model_env: dict[str, str],
    onnx_kontext: Manifest,
    tmp_path: Path,
) -> None:
    assert onnx_kontext.variant_for("cpu").kind == "onnx"
    source = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((150, 100)).save(source)
    workers.start(tier="cpu", lane="final", name="gen-onnx-cpu", **model_env)
    store = JobStore(redis_client)
    jobs = [
        Job(
            input=source.resolve().as_uri(),
            recipe=Recipe(steps=[Step(op="kontext_edit", params=PARAMS)]),
            mode=Lane.FINAL,
            seed=11,
            output=OutputSpec(format="png", key=f"onnx/{name}"),
        )
        for name in ("a", "b")
    ]
    store.enqueue(Submission(job, queue_name("cpu", Lane.FINAL)) for job in jobs)
    ids = [job.id for job in jobs]
    assert wait_until(lambda: all(s and s.terminal for s in store.states(ids)), timeout=240)
    first, second = (r for r in store.get_many(ids) if r is not None)
    for record in (first, second):
        assert record.state is JobState.SUCCEEDED, record
        assert record.result is not None
        assert record.result["info"]["kontext_edit.variant"] == "onnx"
        assert record.result["info"]["kontext_edit.model"] == onnx_kontext.ref
    out = tmp_path / "out" / "onnx"
    with Image.open(out / "a.png") as image:
        assert image.mode == "RGB" and image.size == (96, 64)
    assert (out / "a.png").read_bytes() == (out / "b.png").read_bytes(), "same seed, same image"
    assert second.result and second.result["timings"]["model_load_s"] == 0.0, "stayed resident"
