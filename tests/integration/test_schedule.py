"""Scheduled restoration against a real Redis and a folder of scans (no workers:
jobs are finished by hand through `JobStore.transition`, as a worker would)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from PIL import Image

from jobs.settings import Settings
from jobs.states import ErrorCode, JobState
from jobs.tiers import queue_name
from producer.schedule import schedule as schedule_cli
from producer.schedule import serve_loop
from producer.schedule_config import load_schedules
from producer.schedule_run import run_schedule
from transport.embedded import EmbeddedRedis
from transport.keyspace import Keyspace
from transport.store import JobStore

pytestmark = pytest.mark.integration


def scan(folder: Path, name: str, shade: int = 90) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), (shade, shade - 20, shade - 40)).save(path)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path, Path]:
    scans, out = tmp_path / "scans", tmp_path / "restored"
    for i in range(3):
        scan(scans, f"box1/photo{i}.png", 80 + i)
    (tmp_path / "restore.yaml").write_text(
        "name: restore\nsteps:\n  - dust_scratch_removal: {}\n  - restore_faded_color: {}\n"
    )
    config = tmp_path / "schedules.yaml"
    config.write_text(
        "schedules:\n"
        f"  - name: nightly\n    source: {scans}\n    out: {out}\n"
        "    recipe: restore.yaml\n    cron: '0 2 * * *'\n    priority: 8\n    max_per_run: 100\n"
        f"  - name: hourly\n    source: {scans}\n    out: {out}/hourly\n"
        "    recipe: {steps: [{auto_levels: {}}]}\n    interval: 1h\n"
    )
    return scans, out, config


@pytest.fixture
def settings(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> Settings:
    return Settings(redis_url=redis_server.url)


def finish_all(store: JobStore, redis_client: redis.Redis, failing: str = "") -> None:
    """Play the worker: take every queued job off its list and finish it."""
    for key in redis_client.scan_iter("darkroom:job:*"):
        record = store.get(key.decode().rsplit(":", 1)[1])
        if record is None or record.state is not JobState.QUEUED:
            continue
        store.transition(record.id, JobState.RUNNING, attempt=True)
        if failing and record.source and record.source.endswith(failing):
            store.transition(record.id, JobState.FAILED,
                             error_code=ErrorCode.INPUT_INVALID.value,
                             error_message="not a decodable image")  # fmt: skip
        else:
            store.transition(record.id, JobState.SUCCEEDED)


def test_new_scans_are_restored_once_and_changed_ones_again(
    archive: tuple[Path, Path, Path], settings: Settings, redis_client: redis.Redis
) -> None:
    scans, out, config = archive
    nightly = load_schedules(config)["nightly"]
    store = JobStore(redis_client, Keyspace(settings.key_prefix))

    first = run_schedule(settings, redis_client, nightly)
    assert (first.found, first.queued) == (3, 3)
    queue = queue_name("cpu", "final")
    assert redis_client.llen(f"{queue}:8") == 3  # on the low-priority sub-list
    # a second run while the jobs are still queued queues nothing
    assert run_schedule(settings, redis_client, nightly).skipped == {"in progress": 3}

    finish_all(store, redis_client)
    second = run_schedule(settings, redis_client, nightly)
    assert (second.found, second.queued) == (3, 0)
    assert second.skipped == {"already restored": 3}

    scan(scans, "box2/new.png")
    changed = scan(scans, "box1/photo0.png", shade=200)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = run_schedule(settings, redis_client, nightly)
    assert third.queued == 2
    assert sorted(Path(s).name for s in third.queued_sources) == ["new.png", "photo0.png"]

    report = json.loads((out / "_reports" / "nightly" / f"{third.run}.json").read_text())
    assert report["found"] == 4 and report["queued"] == 2
    assert report["skipped"] == {"already restored": 2}


def test_a_run_is_capped_and_failures_are_reported_not_retried(
    archive: tuple[Path, Path, Path], settings: Settings, redis_client: redis.Redis
) -> None:
    _, _, config = archive
    nightly = load_schedules(config)["nightly"].model_copy(update={"max_per_run": 2})
    store = JobStore(redis_client, Keyspace(settings.key_prefix))
    first = run_schedule(settings, redis_client, nightly)
    assert first.queued == 2 and first.skipped == {"over max_per_run": 1}
    finish_all(store, redis_client, failing="photo1.png")
    second = run_schedule(settings, redis_client, nightly)
    assert second.queued == 1  # the one the cap held back
    (failure,) = second.failed
    assert failure["source"].endswith("photo1.png")
    assert failure["reason"] == "input_invalid: not a decodable image"
    assert failure["run"] == "earlier"
    retried = run_schedule(settings, redis_client, nightly, retry_failed=True)
    assert retried.queued == 1


def test_a_run_that_died_before_queuing_queues_the_same_job_again(
    archive: tuple[Path, Path, Path], settings: Settings, redis_client: redis.Redis
) -> None:
    _, _, config = archive
    nightly = load_schedules(config)["nightly"]
    first = run_schedule(settings, redis_client, nightly)
    ids_before = set(JobStore(redis_client).batch_members(f"nightly-{first.run}"))
    # simulate the crash: the jobs vanish, the ledger still says pending
    for job_id in ids_before:
        redis_client.delete(Keyspace().job(job_id))
    redo = run_schedule(settings, redis_client, nightly)
    assert redo.queued == 3
    assert set(JobStore(redis_client).batch_members(f"nightly-{first.run}")) == ids_before


def test_the_cli_lists_runs_and_waits(
    archive: tuple[Path, Path, Path], redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    _, _, config = archive
    env = {"DARKROOM_REDIS_URL": redis_server.url, "DARKROOM_SCHEDULES": str(config)}
    runner = CliRunner()
    listed = runner.invoke(schedule_cli, ["list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "nightly" in listed.output and "cron 0 2 * * *" in listed.output
    ran = runner.invoke(schedule_cli, ["run", "hourly", "--wait", "--timeout", "0.5"], env=env)
    assert ran.exit_code == 0, ran.output
    assert "found 3, queued 3" in ran.output and "succeeded 0" in ran.output
    unknown = runner.invoke(schedule_cli, ["run", "weekly"], env=env)
    assert unknown.exit_code != 0 and "known: hourly, nightly" in unknown.output


def test_serve_runs_an_interval_schedule_when_due_and_not_before(
    archive: tuple[Path, Path, Path], settings: Settings, redis_client: redis.Redis
) -> None:
    _, _, config = archive
    schedules = load_schedules(config)
    runs = serve_loop(settings, redis_client, schedules, tick_s=0.05, max_ticks=3)
    # hourly ran on the first tick, then was not due; nightly waits for 02:00
    assert runs == 1
