"""Queue faults with real worker processes (the replays in shared/cases/queue/).

Each test names the replay it stands for. A render's count is the job's `attempts`
(every claim counts one): with one running attempt per job, a job rendered twice at
once would show a third attempt or a second start while the first still ran.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis
from PIL import Image
from skimage import data

from jobs import Job, Lane, OutputSpec, Recipe, Step
from jobs.states import JobState
from testbed.faults import AofRedis
from testbed.workers import WorkerFactory, wait_until
from transport.embedded import free_port
from transport.store import JobRecord, JobStore, Submission

pytestmark = pytest.mark.integration
FINAL = "cpu.final"
CLIENT_RETRY_S = 3


def photo(folder: Path, side: int, name: str = "in") -> str:
    path = folder / f"{name}-{side}.png"
    Image.fromarray(data.astronaut()).resize((side, side)).save(path)
    return path.resolve().as_uri()


def long_job(tmp: Path, steps: int = 4, side: int = 400, **fields: object) -> Job:
    """A few seconds of CPU on this machine: `steps` denoise passes of a `side` px photo."""
    recipe = Recipe(steps=[Step(op="denoise", params={"strength": 12})] * steps)
    return Job(
        input=photo(tmp, side),
        recipe=recipe,
        mode=Lane.FINAL,
        output=OutputSpec(format="png"),
        **fields,  # type: ignore[arg-type]
    )


def record(store: JobStore, job_id: str) -> JobRecord:
    found = store.get(job_id)
    assert found is not None
    return found


def wait_state(store: JobStore, job_id: str, *states: JobState, timeout: float = 120) -> JobRecord:
    assert wait_until(lambda: record(store, job_id).state in states, timeout), record(store, job_id)
    return record(store, job_id)


def test_cancel_then_resume_on_a_two_slot_worker_renders_once(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """10_cancel_resubmit_double_run.py: the canceled job's first message is still queued
    when the resume queues a second; a -c 2 worker takes both at once."""
    store = JobStore(redis_client)
    job = long_job(tmp_path)
    store.enqueue([Submission(job, FINAL)])
    store.cancel(job.id)
    assert store.enqueue([Submission(job, FINAL)]).requeued == 1  # the resume
    w = workers.start(concurrency=2)
    done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.FAILED)
    assert done.state is JobState.SUCCEEDED, done
    assert done.attempts == 1, done
    log = w.log.read_text()
    refusals = ("skipping duplicate", "not started: held", "already succeeded")
    assert any(words in log for words in refusals), log[-3000:]


def test_a_killed_pool_child_reruns_its_job_once_within_seconds(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """02_child_kill_double_run.py: Celery requeues the killed child's message and the
    sweep would too; only one attempt may run, and it starts at once (same worker)."""
    store = JobStore(redis_client)
    job = long_job(tmp_path, steps=6)
    workers.start(concurrency=2)
    store.enqueue([Submission(job, FINAL)])
    running = wait_state(store, job.id, JobState.RUNNING, timeout=60)
    time.sleep(0.5)
    assert running.pid is not None
    os.kill(running.pid, signal.SIGKILL)
    killed_at = time.time()
    assert wait_until(lambda: record(store, job.id).attempts >= 2, 60), record(store, job.id)
    rerun = record(store, job.id)
    done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.FAILED)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, done
    assert rerun.running_at is not None
    delay = rerun.running_at - killed_at
    print(f"\nrerun {delay:.1f} s after the pool child was killed")
    assert delay < 10, delay  # not the sweep's old 10 s grace


def test_a_second_worker_under_a_live_name_refuses_to_start(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """13_same_name_workers.py: a name is unique while its owner lives."""
    first = workers.start(name="dup")
    second = workers.start(name="dup", wait=False)
    assert second.proc.wait(timeout=60) != 0
    assert "worker name dup@" in second.log.read_text()
    assert "in use by a live worker" in second.log.read_text()
    store = JobStore(redis_client)
    jobs = [long_job(tmp_path, steps=1, side=200) for _ in range(3)]
    store.enqueue(Submission(j, FINAL) for j in jobs)
    for j in jobs:
        done = wait_state(store, j.id, JobState.SUCCEEDED, JobState.FAILED)
        assert done.state is JobState.SUCCEEDED and done.attempts == 1, done
    # killed, the name is free again once its last beat expires: a restart in place works
    first.kill()
    workers.start(name="dup")


def test_cancel_during_the_only_step_records_canceled_and_writes_nothing(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """08_cancel_running.py single: there is no next step to stop at."""
    store = JobStore(redis_client)
    job = long_job(tmp_path, steps=1, side=900)
    workers.start()
    store.enqueue([Submission(job, FINAL)])
    wait_state(store, job.id, JobState.RUNNING, timeout=60)
    time.sleep(0.3)
    asked = store.cancel(job.id)
    assert asked is not None and asked.state is JobState.RUNNING  # the render is under way
    done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.CANCELED, JobState.FAILED)
    assert done.state is JobState.CANCELED, done
    assert done.output is None
    assert list((tmp_path / "out").glob("**/*.png")) == []


@pytest.mark.slow
def test_a_redis_outage_longer_than_the_render_delays_the_result_but_never_fails_it(
    tmp_path: Path,
) -> None:
    """04_redis_restart.py busy aof: the render goes on without Redis; its output and
    final state are written once Redis is back, by the same single attempt."""
    server = AofRedis(tmp_path / "redis", free_port())
    server.start()
    env = {
        "DARKROOM_REDIS_URL": server.url,
        "DARKROOM_OUTPUT": str(tmp_path / "out"),
        "DARKROOM_HOME": str(tmp_path / "home"),
        "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
        "DARKROOM_HEARTBEAT_TTL_S": "2",
        # A Redis client call gives up after 3 s instead of ~33 s: an outage outlasts it
        # in seconds, and what is tested is what the worker does once it has given up.
        "DARKROOM_REDIS_RETRY_S": str(CLIENT_RETRY_S),
        "PYTHONUNBUFFERED": "1",
    }
    factory = WorkerFactory(server.url, env, tmp_path)
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        store = JobStore(client)
        worker = factory.start()
        job = long_job(tmp_path, steps=3)
        store.enqueue([Submission(job, FINAL)])
        wait_state(store, job.id, JobState.RUNNING, timeout=60)
        server.kill()
        # Down until the render has ended and its write gave up a client's retries at
        # least once (the worker says it waits for Redis), then longer than those again.
        log = worker.log.read_text
        assert wait_until(lambda: "Redis unreachable (" in log(), 60), log()[-3000:]
        time.sleep(CLIENT_RETRY_S + 2)
        server.start()
        done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.FAILED, timeout=90)
        assert done.state is JobState.SUCCEEDED and done.attempts == 1, done
        assert done.error_code is None
        assert len(list((tmp_path / "out").glob("*.png"))) == 1
    finally:
        factory.stop_all()
        client.close()
        server.stop()
