"""Real `darkroom worker` processes for integration tests, stopped by their PIDs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from jobs.schema import Job
from jobs.tiers import queue_name, route
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore, Submission
from workers.cli import worker_argv
from workers.heartbeat import stop_process_group, wait_until_beating

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class WorkerProcess:
    """One `darkroom worker` child in its own process group."""

    proc: subprocess.Popen[bytes]
    name: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the worker and every process it started (a crash, not a shutdown)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        stop_process_group(self.proc, timeout)


@dataclass
class WorkerFactory:
    redis_url: str
    env: dict[str, str]
    tmp: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(
        self,
        *,
        tier: str = "cpu",
        lane: str = "final",
        concurrency: int = 1,
        name: str | None = None,
        wait: bool = True,
        split_lanes: bool = False,
        **env: str,
    ) -> WorkerProcess:
        """Start `darkroom worker` (`split_lanes`: `--lane both` as two processes)."""
        name = name or f"w{len(self.started)}-{tier}-{lane}"
        log = self.tmp / f"{name}.log"
        argv = worker_argv(tier, lane, concurrency, name=name, split_lanes=split_lanes)
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **self.env, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = WorkerProcess(proc, name, log)
        self.started.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess, timeout: float = 60) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            wait_until_beating(client, Keyspace(), worker.name, proc=worker.proc, timeout_s=timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{worker.log.read_text()[-3000:]}") from None

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


def worker_env(redis_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for darkroom processes under test: this Redis, outputs and home under
    `tmp`, heartbeats fast enough (0.5 s, dead after 2 s) that a dead worker shows in
    seconds; plus `extra`."""
    return {
        "DARKROOM_REDIS_URL": redis_url,
        "DARKROOM_OUTPUT": str(tmp / "out"),
        "DARKROOM_HOME": str(tmp / "home"),
        "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
        "DARKROOM_HEARTBEAT_TTL_S": "2",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def wait_until(predicate: Callable[[], bool], timeout: float = 60, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def run_jobs(store: JobStore, jobs: list[Job], timeout: float = 180) -> list[JobRecord]:
    """Enqueue `jobs` on their routed queues and wait until every one has finished."""
    store.enqueue(Submission(j, queue_name(route(j.recipe), j.mode)) for j in jobs)
    ids = [j.id for j in jobs]
    assert wait_until(lambda: all(s and s.terminal for s in store.states(ids)), timeout)
    records = store.get_many(ids)
    assert all(r is not None for r in records)
    return [r for r in records if r is not None]
