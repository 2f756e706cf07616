"""A worker cut off from Redis while alive, across hosts made of network namespaces.

Redis runs in one namespace, two workers in two others (`testbed.netns`). Worker 0's
link is cut mid-render; its lease expires, the sweep hands the job to worker 1, which
finishes it; the link heals. The zombie must not publish a second result, overwrite
worker 1's output or move the job's state, and must go back to consuming.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from jobs.states import JobState
from testbed.netns import Hosts, NamespacesUnavailable
from testbed.workers import ROOT, wait_until
from tests.integration.test_queue_faults import FINAL, long_job, record, wait_state
from transport.embedded import redis_server_binary
from transport.keyspace import Keyspace
from transport.store import JobStore, Submission
from workers.cli import worker_argv
from workers.heartbeat import live_workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PORT = 6390


@dataclass
class Cluster:
    hosts: Hosts
    client: redis.Redis
    tmp: Path
    procs: list[subprocess.Popen[bytes]]

    def worker(self, index: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DARKROOM_REDIS_URL": f"redis://{self.hosts.redis_address(index)}:{PORT}/0",
            "DARKROOM_OUTPUT": str(self.tmp / "out"),
            "DARKROOM_HOME": str(self.tmp / f"home{index}"),
            "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
            "DARKROOM_HEARTBEAT_TTL_S": "2",
            # The zombie notices the cut in seconds, not after a 30 s socket timeout and
            # ~33 s of client retries: what is tested is what it does once it has noticed.
            "DARKROOM_REDIS_SOCKET_TIMEOUT_S": "3",
            "DARKROOM_REDIS_RETRY_S": "3",
            "PYTHONUNBUFFERED": "1",
        }
        argv = worker_argv("cpu", "final", name=f"host{index}")
        proc = subprocess.Popen(
            [*self.hosts.exec_prefix(self.hosts.worker_ns(index)), *argv],
            cwd=ROOT,
            env=env,
            stdout=(self.tmp / f"host{index}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        assert wait_until(lambda: self.beating(f"host{index}@"), 60), self.log(index)
        return proc

    def beating(self, prefix: str) -> bool:
        return any(h.startswith(prefix) for h in live_workers(self.client, Keyspace()))

    def log(self, index: int) -> str:
        return (self.tmp / f"host{index}.log").read_text()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    hosts = Hosts(workers=2)
    try:
        hosts.create()
    except NamespacesUnavailable as exc:
        hosts.remove()
        pytest.skip(str(exc))
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [*hosts.exec_prefix(hosts.redis_ns), redis_server_binary(), "--port", str(PORT),
         "--bind", hosts.redis_address(0), hosts.redis_address(1),
         "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path),
         "--protected-mode", "no"],  # reachable only inside the namespaces made here
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=5)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        assert wait_until(lambda: sock.exists(), 10)
        yield Cluster(hosts, client, tmp_path, procs)
    finally:
        for proc in [*procs, server]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        client.close()
        hosts.remove()


def test_a_partitioned_worker_neither_publishes_nor_moves_the_state_and_resumes(
    cluster: Cluster,
) -> None:
    store = JobStore(cluster.client)
    cluster.worker(0)
    job = long_job(cluster.tmp, steps=4)
    store.enqueue([Submission(job, FINAL)])
    wait_state(store, job.id, JobState.RUNNING, timeout=60)
    assert (record(store, job.id).worker or "").startswith("host0@")
    cluster.worker(1)
    cluster.hosts.cut(0)  # host0 renders on, cut off

    done = wait_state(store, job.id, JobState.SUCCEEDED, JobState.FAILED, timeout=120)
    assert done.state is JobState.SUCCEEDED and (done.worker or "").startswith("host1@"), done
    (output,) = (cluster.tmp / "out").glob("*.png")
    written = output.stat().st_mtime_ns
    assert wait_until(lambda: "writes nothing" in cluster.log(0) or "renewal" in cluster.log(0))
    cluster.hosts.heal(0)
    # the zombie learns it lost the job and writes nothing
    assert wait_until(lambda: "writes nothing" in cluster.log(0), 90), cluster.log(0)[-3000:]
    after = record(store, job.id)
    assert (after.state, after.worker, after.attempts) == (done.state, done.worker, 2)
    assert output.stat().st_mtime_ns == written
    # and goes back to consuming
    assert wait_until(lambda: cluster.beating("host0@"), 60)
    cluster.procs[1].send_signal(signal.SIGTERM)
    cluster.procs[1].wait(timeout=60)
    more = long_job(cluster.tmp, steps=1, side=200)
    store.enqueue([Submission(more, FINAL)])
    served = wait_state(store, more.id, JobState.SUCCEEDED, JobState.FAILED, timeout=90)
    assert served.state is JobState.SUCCEEDED and (served.worker or "").startswith("host0@")
