"""A real Celery worker process against a real Redis: jobs end to end, bad input, crashes."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, Lane, OutputSpec, Recipe, Step
from jobs.states import ErrorCode, JobState
from jobs.tiers import queue_name
from testbed.workers import WorkerFactory, wait_until
from transport.messages import priority_lists
from transport.store import JobStore, Submission

pytestmark = pytest.mark.integration

FINAL = queue_name("cpu", Lane.FINAL)
PREVIEW = queue_name("cpu", Lane.PREVIEW)


def photo(path: Path, side: int = 512) -> str:
    Image.fromarray(data.astronaut()).resize((side, side)).save(path, quality=92)
    return path.resolve().as_uri()


def submit(store: JobStore, jobs: list[Job], queue: str = FINAL) -> None:
    store.enqueue(Submission(job, queue) for job in jobs)


def wait_done(store: JobStore, ids: list[str], timeout: float = 90) -> None:
    def done() -> bool:
        return all(s is not None and s.terminal for s in store.states(ids))

    assert wait_until(done, timeout), [store.get(i) for i in ids if store.get(i)]


def test_a_job_runs_end_to_end(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    workers.start(lane="final")
    store = JobStore(redis_client)
    src = photo(tmp_path / "astronaut.jpg")
    job = Job(
        input=src,
        recipe=Recipe(steps=[Step(op="resize", params={"max_side": 200}), Step(op="auto_levels")]),
        output=OutputSpec(format="png", key="portraits/astro"),
    )
    submit(store, [job])
    wait_done(store, [job.id])
    record = store.get(job.id)
    assert record is not None and record.state is JobState.SUCCEEDED, record
    out = tmp_path / "out" / "portraits" / "astro.png"
    assert record.output == out.as_uri()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (200, 200)
    assert record.attempts == 1 and record.worker and record.worker.startswith("w0-cpu-final")
    assert record.result and record.result["steps"] == ["resize", "auto_levels"]
    assert record.queued_at <= record.running_at <= record.succeeded_at  # type: ignore[operator]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))  # a few bytes where GBs should be
    )


def test_bad_inputs_fail_their_own_jobs_and_the_worker_keeps_serving(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = io.BytesIO()
    Image.fromarray(data.astronaut()).save(good, format="JPEG")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[:2000])
    (folder / "text.png").write_text("this is not an image, just text named .png\n")
    (folder / "huge.png").write_bytes(png_header_claiming(30000, 30000))
    Image.new("RGB", (1, 1), "red").save(folder / "tiny.png")
    (folder / "good1.jpg").write_bytes(good.getvalue())
    Image.fromarray(data.coffee()).save(folder / "good2.png")
    expected = {
        "zero": (ErrorCode.INPUT_INVALID, "zero.jpg: empty file"),
        "truncated": (ErrorCode.INPUT_INVALID, "truncated or corrupt JPEG"),
        "text": (ErrorCode.INPUT_INVALID, "text file is not an image"),
        "huge": (ErrorCode.INPUT_TOO_LARGE, "30000x30000"),
        "tiny": (ErrorCode.INPUT_INVALID, "1x1 image is too small"),
        "missing": (ErrorCode.INPUT_INVALID, "input not found"),
        "good1": None,
        "good2": None,
    }
    recipe = Recipe(steps=[Step(op="resize", params={"max_side": 64})])
    jobs = {
        name: Job(
            input=(
                folder / f"{name}.{'png' if name in ('text', 'huge', 'tiny', 'good2') else 'jpg'}"
            ).as_uri(),
            recipe=recipe,
            output=OutputSpec(key=name),
        )
        for name in expected
    }
    workers.start(lane="final")
    store = JobStore(redis_client)
    submit(store, list(jobs.values()))
    wait_done(store, [j.id for j in jobs.values()])
    for name, outcome in expected.items():
        record = store.get(jobs[name].id)
        assert record is not None
        if outcome is None:
            assert record.state is JobState.SUCCEEDED, record
            assert (tmp_path / "out" / f"{name}.webp").exists()
        else:
            code, message = outcome
            assert record.state is JobState.FAILED, (name, record)
            assert record.error_code is code, (name, record.error_code, record.error_message)
            assert message in (record.error_message or ""), record.error_message
    # the worker is alive and still serving after all that
    after = Job(input=jobs["good1"].input, recipe=recipe, output=OutputSpec(key="after"))
    submit(store, [after])
    wait_done(store, [after.id])
    assert store.get(after.id).state is JobState.SUCCEEDED  # type: ignore[union-attr]
    assert workers.started[0].proc.poll() is None


def test_killed_worker_job_runs_again_on_another_worker_within_seconds(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    src = photo(tmp_path / "astronaut.jpg", side=768)
    slow = Recipe(
        steps=[
            Step(op="denoise", params={"strength": 10}),
            Step(op="sharpen"),
            Step(op="resize", params={"max_side": 256}),
        ]
    )
    jobs = [
        Job(input=src, recipe=slow, output=OutputSpec(key=f"k/{i}"), batch="crash")
        for i in range(10)
    ]
    victim = workers.start(lane="final", name="victim")
    survivor = workers.start(lane="final", name="survivor")
    store = JobStore(redis_client)
    submit(store, jobs)

    def victim_busy() -> str | None:
        for job in jobs:
            record = store.get(job.id)
            if (
                record
                and record.state is JobState.RUNNING
                and (record.worker or "").startswith("victim")
            ):
                return job.id
        return None

    assert wait_until(lambda: victim_busy() is not None, 60)
    job_id = victim_busy()
    assert job_id is not None
    victim.kill()
    killed_at = time.time()

    def restarted() -> bool:
        record = store.get(job_id)
        return record is not None and record.attempts >= 2 and record.state is not JobState.QUEUED

    assert wait_until(restarted, 30)
    record = store.get(job_id)
    assert record is not None and record.running_at is not None
    assert record.running_at - killed_at < 10, (
        f"restarted after {record.running_at - killed_at:.1f}s"
    )
    wait_done(store, [j.id for j in jobs], timeout=180)
    records = [store.get(j.id) for j in jobs]
    assert all(r is not None and r.state is JobState.SUCCEEDED for r in records), records
    assert sorted(r.attempts for r in records if r) == [1] * 9 + [2]
    outputs = sorted(p.name for p in (tmp_path / "out" / "k").iterdir())
    assert outputs == sorted(f"{i}.webp" for i in range(10))  # each written once, no strays
    assert store.batch_counts("crash")["succeeded"] == 10
    assert survivor.proc.poll() is None


def test_preview_does_not_wait_behind_a_final_backlog(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    src = photo(tmp_path / "astronaut.jpg", side=512)
    store = JobStore(redis_client)
    finals = [
        Job(input=src, recipe=Recipe(steps=[Step(op="denoise")]), output=OutputSpec(key=f"f/{i}"))
        for i in range(30)
    ]
    submit(store, finals)
    workers.start(lane="both", name="both")
    assert wait_until(
        lambda: any(s is JobState.RUNNING for s in store.states([j.id for j in finals])), 60
    )
    preview = Job(
        input=src,
        recipe=Recipe(steps=[Step(op="resize", params={"max_side": 64})]),
        mode=Lane.PREVIEW,
        priority=0,
        output=OutputSpec(key="p"),
    )
    submit(store, [preview], PREVIEW)
    wait_done(store, [preview.id], timeout=30)
    record = store.get(preview.id)
    assert record is not None and record.state is JobState.SUCCEEDED
    assert record.running_at - record.queued_at < 2.0  # type: ignore[operator]
    waiting = sum(redis_client.llen(k) for k in priority_lists(FINAL))
    assert waiting >= 20, "the preview should have run while the final backlog was still queued"


def test_a_canceled_queued_job_never_starts(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store = JobStore(redis_client)
    src = photo(tmp_path / "a.jpg", side=64)
    keep, drop = (
        Job(input=src, recipe=Recipe(steps=[Step(op="auto_levels")]), output=OutputSpec(key=k))
        for k in ("keep", "drop")
    )
    submit(store, [drop, keep])
    store.cancel(drop.id)
    workers.start(lane="final")
    wait_done(store, [keep.id, drop.id])
    assert store.get(drop.id).state is JobState.CANCELED  # type: ignore[union-attr]
    assert store.get(keep.id).state is JobState.SUCCEEDED  # type: ignore[union-attr]
    assert not (tmp_path / "out" / "drop.webp").exists()
