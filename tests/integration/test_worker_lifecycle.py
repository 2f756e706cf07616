"""Starting, probing, draining and stopping real workers, `--lane both` included.

12_lane_both_sigterm.py (SIGTERM to the supervisor during a long final), 15_k8s_probe_
flags.sh (the probe and preStop commands), and a lane whose process dies (a poison
preview) taking the other lane down with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from jobs.states import JobState
from testbed.workers import ROOT, WorkerFactory, WorkerProcess, wait_until
from tests.integration.test_queue_faults import FINAL, long_job, record, wait_state
from transport.keyspace import Keyspace
from transport.store import JobStore, Submission
from workers.heartbeat import live_workers
from workers.supervise import descendants

pytestmark = pytest.mark.integration


def darkroom(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "darkroom", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is not running
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def beat_pid(client: redis.Redis, prefix: str) -> int:
    beats = live_workers(client, Keyspace())
    (pid,) = [int(b["pid"]) for h, b in beats.items() if h.startswith(prefix)]
    return pid


def sigterm_and_wait(sup: WorkerProcess, timeout: float = 120) -> tuple[int, list[int]]:
    """SIGTERM the supervisor alone (what k8s / docker stop send to PID 1)."""
    tree = descendants(sup.pid)
    sup.proc.send_signal(signal.SIGTERM)
    code = sup.proc.wait(timeout=timeout)
    time.sleep(0.5)
    return code, [pid for pid in tree if alive(pid)]


def test_sigterm_to_lane_both_waits_for_the_final_render_and_leaves_nothing_running(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store = JobStore(redis_client)
    sup = workers.start(lane="both", name="sup")
    job = long_job(tmp_path, steps=4)
    store.enqueue([Submission(job, FINAL)])
    wait_state(store, job.id, JobState.RUNNING, timeout=60)
    code, left = sigterm_and_wait(sup)
    assert code == 0 and left == []
    done = record(store, job.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 1, done
    assert "Traceback" not in sup.log.read_text()


@pytest.mark.slow
def test_a_render_longer_than_the_shutdown_grace_is_killed_and_runs_again_elsewhere(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store = JobStore(redis_client)
    sup = workers.start(lane="both", name="sup", DARKROOM_SHUTDOWN_GRACE_S="1")
    job = long_job(tmp_path, steps=16)  # a few seconds: well past the 1 s grace
    store.enqueue([Submission(job, FINAL)])
    wait_state(store, job.id, JobState.RUNNING, timeout=60)
    started = time.monotonic()
    _, left = sigterm_and_wait(sup, timeout=60)
    assert left == [] and time.monotonic() - started < 30
    assert "Traceback" not in sup.log.read_text()
    workers.start(name="other")  # its lease expired: the sweep hands it over
    done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.FAILED)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, done
    assert (done.worker or "").startswith("other@")


def test_a_lane_whose_process_dies_restarts_alone(
    workers: WorkerFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store = JobStore(redis_client)
    workers.start(lane="both", name="sup", split_lanes=True)
    job = long_job(tmp_path, steps=4)
    store.enqueue([Submission(job, FINAL)])
    wait_state(store, job.id, JobState.RUNNING, timeout=60)
    final_pid = beat_pid(redis_client, "sup-final@")
    os.kill(beat_pid(redis_client, "sup-preview@"), signal.SIGKILL)  # a poison preview
    done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.FAILED)
    assert done.state is JobState.SUCCEEDED and done.attempts == 1, done
    assert beat_pid(redis_client, "sup-final@") == final_pid  # never restarted
    assert wait_until(lambda: len(live_workers(redis_client, Keyspace())) == 2, 60)


def test_probe_says_ready_only_while_a_worker_of_this_host_consumes(
    workers: WorkerFactory, worker_env: dict[str, str]
) -> None:
    assert darkroom(worker_env, "worker", "--probe").returncode == 1
    workers.start(name="probed")  # beating; ready once Celery consumes
    probes: list[subprocess.CompletedProcess[str]] = []

    def ready() -> bool:
        probes.append(darkroom(worker_env, "worker", "--probe"))
        return probes[-1].returncode == 0

    assert wait_until(ready, 60, every=0.5), probes[-1].stderr
    assert "probed@" in probes[-1].stdout


def test_drain_lets_the_running_job_finish_then_the_worker_is_gone(
    workers: WorkerFactory, redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    store = JobStore(redis_client)
    worker = workers.start(name="drained")
    job = long_job(tmp_path, steps=3)
    store.enqueue([Submission(job, FINAL)])
    wait_state(store, job.id, JobState.RUNNING, timeout=60)
    drain = darkroom(worker_env, "worker", "--drain", "--drain-timeout", "90", timeout=120)
    assert drain.returncode == 0, drain.stdout + drain.stderr
    assert record(store, job.id).state is JobState.SUCCEEDED
    assert worker.proc.wait(timeout=30) == 0
    assert json.loads(json.dumps(live_workers(redis_client, Keyspace()))) == {}


def test_workers_and_submit_refuse_a_redis_that_may_evict_jobs(
    workers: WorkerFactory, redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """07_maxmemory_lru.py: with an LRU policy Redis evicts job records; refuse up front."""
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        refused = workers.start(name="careful", wait=False)
        assert refused.proc.wait(timeout=60) != 0
        assert "maxmemory-policy noeviction" in refused.log.read_text()
        (tmp_path / "in").mkdir()
        long_job(tmp_path / "in", steps=1, side=64)  # writes a photo there
        submit = darkroom(worker_env, "submit", str(tmp_path / "in"), "--op", "auto_levels")
        assert submit.returncode == 2, submit.stdout + submit.stderr
        assert "maxmemory-policy is allkeys-lru" in submit.stderr
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
