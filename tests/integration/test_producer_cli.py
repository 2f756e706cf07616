"""`darkroom submit | status | queues | cancel` against a real Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from jobs.settings import Settings
from jobs.states import JobState
from producer.batch import submit_batch
from producer.recipes import recipe_from_ops
from producer.sources import SourceItem
from tests.fixtures.cli import (
    Env,
    decode,
    depth,
    make_photos,
    messages,
    play_worker,
    store_of,
    take,
)
from transport.keyspace import Keyspace
from transport.messages import UNACKED_HASH, priority_list

pytestmark = pytest.mark.integration


PHOTOS = ["day1/IMG_1.jpg", "day1/IMG_2.jpg", "day2/IMG_1.jpg", "cover.png", "day2/IMG_3.jpg"]
OPS = ["--op", "denoise:strength=8", "--op", "resize:max_side=64"]


def batch_of(output: str) -> str:
    """The batch name `submit` printed on its first line."""
    return output.split("batch ", 1)[1].split(":", 1)[0]


def submit(cli_env: Env, *args: str) -> str:
    result = cli_env.run("submit", *args, "--no-progress")
    assert result.exit_code == 0, result.output
    return batch_of(result.output)


def test_submit_puts_one_message_per_image_on_the_routed_list(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS)
    result = cli_env.run("submit", str(shoot), *OPS, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "-> cpu.final" in result.output and "new 5, requeued 0, skipped 0" in result.output
    # priority 5 is the list `cpu.final:5`; nothing anywhere else
    assert redis_client.llen(priority_list("cpu.final", 5)) == 5
    assert depth(redis_client, "cpu.final") == 5 and depth(redis_client, "cpu.preview") == 0
    jobs = {m["job"]["output"]["key"]: m["job"] for m in messages(redis_client, "cpu.final")}
    assert sorted(jobs) == ["cover", "day1/IMG_1", "day1/IMG_2", "day2/IMG_1", "day2/IMG_3"]
    job = jobs["day1/IMG_2"]
    assert job["input"] == (shoot / "day1/IMG_2.jpg").as_uri()
    assert job["output"]["uri"] == cli_env.out.resolve().as_uri() + "/"
    assert [s["op"] for s in job["recipe"]["steps"]] == ["denoise", "resize"]
    store = store_of(redis_client, cli_env.settings)
    states = store.states(list(store.batch_members(batch_of(result.output))))
    assert states == [JobState.QUEUED] * 5


def test_mode_priority_format_and_out_shape_the_jobs(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:2])
    out = tmp_path / "drafts"
    submit(
        cli_env,
        str(shoot),
        *OPS,
        "--mode",
        "preview",
        "--priority",
        "0",
        "--format",
        "jpeg",
        "--quality",
        "70",
        "--out",
        str(out),
        "--batch",
        "drafts-1",
    )
    assert redis_client.llen("cpu.preview") == 2 and depth(redis_client, "cpu.final") == 0
    job = messages(redis_client, "cpu.preview")[0]["job"]
    assert (job["mode"], job["priority"], job["batch"]) == ("preview", 0, "drafts-1")
    assert job["output"]["format"] == "jpeg" and job["output"]["quality"] == 70
    assert job["output"]["uri"] == out.resolve().as_uri() + "/"


def test_recipe_file_output_block_is_used(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:1])
    recipe = tmp_path / "retouch.yaml"
    recipe.write_text("name: retouch\nsteps:\n  - auto_levels: {}\noutput: {format: png}\n")
    name = submit(cli_env, str(shoot), "--recipe", str(recipe))
    assert name.startswith("retouch-")
    assert messages(redis_client, "cpu.final")[0]["job"]["output"]["format"] == "png"


def test_rerun_skips_everything_then_requeues_only_failed_jobs(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS)
    args = ["submit", str(shoot), *OPS, "--no-progress"]
    first = cli_env.run(*args)
    again = cli_env.run(*args)
    assert batch_of(again.output) == batch_of(first.output)
    assert "new 0, requeued 0, skipped 5 (already queued 5)" in again.output
    assert depth(redis_client, "cpu.final") == 5
    # workers take four jobs: two succeed, two fail; the fifth is still queued
    store = store_of(redis_client, cli_env.settings)
    taken = sorted(take(redis_client, "cpu.final"), key=lambda j: j.output.key or "")
    left, taken = taken[-1], taken[:-1]
    redis_client.lpush(priority_list("cpu.final", 5), _message_for(store, left.id))
    for job, fail in zip(taken, [None, "input_invalid", None, "internal"], strict=True):
        play_worker(store, job, fail=fail)
    third = cli_env.run(*args)
    assert third.exit_code == 0, third.output
    assert "new 0, requeued 2, skipped 3" in third.output
    assert "queued 1" in third.output and "succeeded 2" in third.output
    requeued = {m["id"] for m in messages(redis_client, "cpu.final")} - {left.id}
    assert requeued == {taken[1].id, taken[3].id}
    counts = store.batch_counts(batch_of(first.output))
    assert (counts["total"], counts["queued"], counts["succeeded"], counts["failed"]) == (
        5,
        3,
        2,
        0,
    )


def _message_for(store: object, job_id: str) -> str:
    """Rebuild the message of a job we popped only to pick which one to leave queued."""
    from transport.messages import render_message

    assert hasattr(store, "job")
    job = store.job(job_id)
    return render_message(job_id, job.model_dump(mode="json", by_alias=True), "cpu.final", 5)


def test_queues_shows_depth_in_flight_and_live_workers(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS)
    submit(cli_env, str(shoot), *OPS)
    # the same images again, as a separate urgent batch (same batch: same jobs, skipped)
    submit(cli_env, str(shoot), *OPS, "--priority", "0", "--batch", "urgent")
    submit(cli_env, str(shoot / "day1"), *OPS, "--mode", "preview")
    # a worker took one final job: kombu moves it to the unacked hash
    raw = redis_client.rpop(priority_list("cpu.final", 0))
    assert isinstance(raw, bytes)
    redis_client.hset(UNACKED_HASH, "tag-1", json.dumps([json.loads(raw), "", "cpu.final"]))
    keys = Keyspace(cli_env.settings.key_prefix)
    beat = {
        "hostname": "w1",
        "tier": "cpu",
        "queues": ["cpu.preview", "cpu.final"],
        "pid": 1,
        "started_at": time.time(),
        "job": decode(raw)["id"],
    }
    redis_client.set(keys.worker("w1"), json.dumps(beat), px=60_000)
    redis_client.sadd(keys.workers(), "w1", "w-dead")  # w-dead's heartbeat expired
    result = cli_env.run("queues", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["queue"]: row for row in json.loads(result.output)}
    assert rows["cpu.final"] == {
        "queue": "cpu.final",
        "depth": 9,
        "in_flight": 1,
        "workers": 1,
        "busy": 1,
    }
    assert (rows["cpu.preview"]["depth"], rows["cpu.preview"]["busy"]) == (2, 0)
    assert rows["a100.final"]["depth"] == 0
    assert redis_client.smembers(keys.workers()) == {b"w1"}
    table = cli_env.run("queues").output.splitlines()
    assert table[0].split() == ["QUEUE", "DEPTH", "IN-FLIGHT", "WORKERS", "BUSY"]
    assert "cpu.final 9 1 1 1" in [" ".join(line.split()) for line in table]


def test_status_of_a_job_and_of_a_batch(
    cli_env: Env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:3])
    name = submit(cli_env, str(shoot), *OPS)
    store = store_of(redis_client, cli_env.settings)
    first, second, third = sorted(take(redis_client, "cpu.final"), key=lambda j: j.output.key or "")
    play_worker(store, first)
    play_worker(store, second, fail="input_invalid")
    job = cli_env.run("status", second.id)
    assert job.exit_code == 0
    assert f"job {second.id}: failed" in job.output
    assert "input_invalid: the test said input_invalid" in job.output
    assert "day1/IMG_2.jpg" in job.output
    as_json = json.loads(cli_env.run("status", first.id, "--json").output)
    assert as_json["state"] == "succeeded" and as_json["output"].endswith("day1/IMG_1.webp")
    batch = cli_env.run("status", "--batch", name)
    assert f"batch {name}: 2 of 3 finished (66.7 %)" in batch.output
    assert "failures by code: input_invalid 1" in batch.output
    data = json.loads(cli_env.run("status", "--batch", name, "--json").output)
    assert data["counts"]["succeeded"] == 1 and data["counts"]["queued"] == 1
    assert [f["job_id"] for f in data["failures"]] == [second.id]
    assert third.id  # still queued: not a failure
    missing = cli_env.run("status", "0" * 32)
    assert missing.exit_code == 1 and "no job" in missing.output


def test_cancel_a_queued_job(cli_env: Env, redis_client: redis.Redis, tmp_path: Path) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:3])
    name = submit(cli_env, str(shoot), *OPS)
    store = store_of(redis_client, cli_env.settings)
    queued, running, done = [m["id"] for m in messages(redis_client, "cpu.final")]
    store.transition(running, JobState.RUNNING, attempt=True, worker="w")
    store.transition(done, JobState.RUNNING, attempt=True, worker="w")
    store.transition(done, JobState.SUCCEEDED, output="file:///x.webp")
    result = cli_env.run("cancel", queued)
    assert result.exit_code == 0 and f"job {queued}: canceled" in result.output
    assert store.get(queued).state is JobState.CANCELED  # type: ignore[union-attr]
    assert store.batch_counts(name)["canceled"] == 1
    asked = cli_env.run("cancel", running)
    assert asked.exit_code == 0 and "cancel requested" in asked.output
    refused = cli_env.run("cancel", done)
    assert refused.exit_code == 1 and "already succeeded" in refused.output
    assert cli_env.run("cancel", "f" * 32).exit_code == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["submit", "{shoot}", "--op", "sparkle"], "unknown op 'sparkle'"),
        (["submit", "{shoot}", "--op", "denoise:strength=99"], "strength"),
        (["submit", "{shoot}", "--op", "denoise:strength"], "is not key=value"),
        (["submit", "{shoot}", "--op", "denoise", "--recipe", "{recipe}"], "not both"),
        (["submit", "{shoot}"], "--recipe FILE or at least one --op"),
        (["submit", "{tmp}/nope", "--op", "denoise"], "no such file or directory"),
        (["submit", "{empty}", "--op", "denoise"], "no images found"),
        (["submit", "{shoot}", "--recipe", "{bad_recipe}"], "bad.yaml:2 (sparkle)"),
        (["submit", "{shoot}", "--op", "denoise", "--batch", "a b"], "batch name"),
        (["status"], "give a JOB_ID or --batch NAME"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    cli_env: Env, tmp_path: Path, args: list[str], expected: str
) -> None:
    shoot = make_photos(tmp_path / "shoot", PHOTOS[:1])
    (tmp_path / "empty").mkdir()
    (tmp_path / "r.yaml").write_text("steps: [denoise: {}]\n")
    (tmp_path / "bad.yaml").write_text("steps:\n  - sparkle: {}\n")
    values = {
        "shoot": str(shoot),
        "tmp": str(tmp_path),
        "empty": str(tmp_path / "empty"),
        "recipe": str(tmp_path / "r.yaml"),
        "bad_recipe": str(tmp_path / "bad.yaml"),
    }
    result = cli_env.run(*(a.format(**values) for a in args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0]
    assert "Traceback" not in result.output


def test_unreachable_redis_is_one_line_and_exit_1(cli_env: Env, tmp_path: Path) -> None:
    cli_env.redis_url = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    result = cli_env.run("queues")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach Redis")


def test_20000_jobs_queue_once_and_a_resubmit_skips_them(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A studio-sized batch lands whole, and submitting it again queues nothing twice.

    The submission rate (target >= 5,000 jobs/s) is measured by `python -m bench.queue`.
    """
    settings = Settings(redis_url="redis://unused", output=str(tmp_path / "out"))
    items = [
        SourceItem(f"file:///shoot/IMG_{i:05d}.jpg", f"shoot/IMG_{i:05d}.jpg", f"IMG_{i:05d}")
        for i in range(20_000)
    ]
    recipe = recipe_from_ops(["denoise:strength=8", "resize:max_side=2048"]).recipe
    handle = submit_batch(settings, redis_client, items, recipe, batch="rate")
    assert handle.report.new == 20_000 and depth(redis_client, "cpu.final") == 20_000
    again = submit_batch(settings, redis_client, items, recipe, batch="rate")
    assert again.report.skipped == {"queued": 20_000}
    assert depth(redis_client, "cpu.final") == 20_000
