"""Model-aware claiming with real workers on tiny models: a job whose model is warm on a
live worker of its queue, and cold where it was delivered, runs on the warm one.

Each worker has room for one model (three copies of the tiny InstructPix2Pix model,
each published as needing 10 GB, and a 15 GB budget), so every switch is a reload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, OutputSpec, Recipe, Step
from jobs.states import JobState
from testbed.workers import WorkerFactory, WorkerProcess, wait_until
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore, Submission

pytestmark = [pytest.mark.integration, pytest.mark.gen, pytest.mark.slow]

QUEUE = "edge.final"  # where ip2p_edit routes
MODELS = ("m-a", "m-b", "m-c")
SHORT = {"max_side": 64, "steps": 2}
LONG = {"max_side": 512, "steps": 100}  # far longer than a dead worker takes to be swept


@pytest.fixture(scope="module")
def one_model_each(tiny_models: Any) -> dict[str, str]:
    """Worker env: three copies of the tiny ip2p model (`m-a@stable`...), each said to
    need 10 GB resident, and a budget with room for one."""
    from model_store import VariantSpec

    original = tiny_models.manifests["ip2p"]
    for name in MODELS:
        variant = VariantSpec(name="fp32", kind="fp32", tiers=["edge"], memory_gb=10.0)
        manifest = tiny_models.store.publish(
            tiny_models.folders["ip2p"], name, "1", variants=[variant],
            components=dict(original.components),
        )  # fmt: skip
        tiny_models.store.promote(manifest.ref, "stable")
    return {
        "DARKROOM_MODEL_STORE": tiny_models.settings.model_store_uri(),
        "DARKROOM_MODEL_BUDGET_GB": "15",
    }


@pytest.fixture
def photo(tmp_path: Path) -> str:
    path = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((96, 64)).save(path)
    return path.resolve().as_uri()


@pytest.fixture
def big_photo(tmp_path: Path) -> str:
    """Large enough for `LONG` renders to work at 512 px."""
    path = tmp_path / "chelsea-big.png"
    Image.fromarray(data.chelsea()).resize((768, 512)).save(path)
    return path.resolve().as_uri()


def _job(src: str, model: str, size: dict[str, int] = SHORT) -> Job:
    params = {"prompt": "sketch", "model": f"{model}@stable", **size}
    return Job(
        input=src,
        recipe=Recipe(steps=[Step(op="ip2p_edit", params=params)]),
        seed=1,
        output=OutputSpec(format="png"),
    )


def _submit(store: JobStore, jobs: Iterable[Job]) -> list[str]:
    jobs = list(jobs)
    store.enqueue(Submission(j, QUEUE) for j in jobs)
    return [j.id for j in jobs]


def _finished(store: JobStore, ids: list[str], timeout: float = 300) -> list[JobRecord]:
    assert wait_until(lambda: all(s and s.terminal for s in store.states(ids)), timeout)
    records = [r for r in store.get_many(ids) if r is not None]
    assert [r.state for r in records] == [JobState.SUCCEEDED] * len(ids), records
    return records


def _loads(records: Iterable[JobRecord]) -> int:
    """Jobs that had to load their model first (the rest found it resident)."""
    return sum(bool(r.result and r.result["timings"]["model_load_s"] > 0) for r in records)


def _beat(client: redis.Redis, worker: WorkerProcess) -> dict[str, Any]:
    keys = Keyspace()
    for name in client.smembers(keys.workers()):
        if name.decode().startswith(f"{worker.name}@"):
            raw = client.get(keys.worker(name.decode()))
            return json.loads(raw) if raw else {}
    return {}


def _warm(
    client: redis.Redis, store: JobStore, src: str, model: str, workers: list[WorkerProcess]
) -> None:
    """Run short `model` jobs until every one of `workers` advertises it resident."""
    for _ in range(10):
        if all(f"{model}@stable" in _beat(client, w).get("resident", []) for w in workers):
            return
        _finished(store, _submit(store, [_job(src, model) for _ in workers]))
        wait_until(
            lambda: all(f"{model}@stable" in _beat(client, w).get("resident", []) for w in workers),
            timeout=3,
        )
    raise AssertionError(f"{model} never became resident on every worker")


def _stream(
    workers: WorkerFactory, env: dict[str, str], store: JobStore, src: str, affinity: str
) -> list[JobRecord]:
    """Two workers of one queue, 16 jobs alternating models in pairs (a a b b ...)."""
    started = [
        workers.start(tier="edge", name=f"aff{affinity}-{n}", DARKROOM_MODEL_AFFINITY=affinity,
                      **env)
        for n in range(2)
    ]  # fmt: skip
    models = [MODELS[(n // 2) % 2] for n in range(16)]
    records = _finished(store, _submit(store, [_job(src, m) for m in models]))
    for worker in started:
        worker.stop()
    return records


def test_alternating_models_reload_less_with_affinity_than_lru_alone(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    one_model_each: dict[str, str],
    photo: str,
) -> None:
    store = JobStore(redis_client)
    lru = _stream(workers, one_model_each, store, photo, affinity="0")
    aware = _stream(workers, one_model_each, store, photo, affinity="1")
    assert not any(r.forwarded_to for r in lru)
    forwarded = [r for r in aware if r.forwarded_to]
    assert forwarded, "no job was forwarded to the worker holding its model"
    # a forwarded job runs where it was sent: it is never forwarded on
    assert all(r.worker == r.forwarded_to and r.attempts == 1 for r in forwarded)
    assert _loads(aware) < _loads(lru), (_loads(aware), _loads(lru))


def test_a_forwarded_job_whose_target_dies_runs_once_elsewhere_and_is_not_forwarded_again(
    workers: WorkerFactory,
    redis_client: redis.Redis,
    one_model_each: dict[str, str],
    photo: str,
    big_photo: str,
) -> None:
    store = JobStore(redis_client)
    # 1. two workers that never forward hold m-b, and each runs a long m-b job
    warm = [
        workers.start(tier="edge", name=f"warm{n}", DARKROOM_MODEL_AFFINITY="0", **one_model_each)
        for n in range(2)
    ]
    _warm(redis_client, store, photo, "m-b", warm)
    long_ids = _submit(store, [_job(big_photo, "m-b", LONG) for _ in warm])
    assert wait_until(lambda: len({r.worker for r in store.get_many(long_ids) if r}) == 2, 60)
    # 2. a third worker, cold, is handed a short m-b job: it forwards it to a busy warm one
    # (two slots: one for the dead target's long job, which the sweep returns as well)
    cold = workers.start(tier="edge", name="cold", concurrency=2, **one_model_each)
    (job_id,) = _submit(store, [_job(photo, "m-b")])
    assert wait_until(lambda: bool(getattr(store.get(job_id), "forwarded_to", None)), 60)
    record = store.get(job_id)
    assert record is not None and record.state is JobState.QUEUED, record
    target = next(w for w in warm if str(record.forwarded_to).startswith(f"{w.name}@"))
    # 3. the target dies before it runs the job: the sweep returns its direct queue, and
    # the cold worker runs the job itself, though the other warm worker would take it
    target.kill()
    (done,) = _finished(store, [job_id], timeout=120)
    assert done.worker is not None and done.worker.startswith(f"{cold.name}@"), done.worker
    assert done.forwarded_to == record.forwarded_to and done.attempts == 1
    survivor = next(w for w in warm if w is not target)
    assert "m-b@stable" in _beat(redis_client, survivor).get("resident", [])
    _finished(store, long_ids, timeout=300)  # the dead target's long job ran again too
