"""Proof under faults: 500 jobs through two real workers while a part of the system breaks.

Each scenario gets its own append-only Redis, the same SeaweedFS and a fresh versioned
bucket; ten jobs at the tail of the queue are canceled just before the fault.

1. kill: SIGKILL one worker's whole process group while it renders, start it again
   under a new name (as a pid-based default name would be); `kill-same-name`: under its
   own name (a container restarted in place), with production heartbeat timing;
   `child-kill`: SIGKILL only the pool process rendering a job on a `-c 2` worker;
   `same-name`: start a third worker under a live worker's name mid-batch;
2. redis: SIGKILL redis-server (AOF on, `--fsync`) mid-render, restart it on the same
   port and data dir 2 s later; the workers must reconnect by themselves;
   `redis-outage`: the same, down `--redis-down` seconds (longer than a client retries);
3. s3: SIGKILL the S3 server mid-batch and start it again `--s3-down` seconds later.

The table: jobs; succeeded, canceled, failed; lost (not finished, or succeeded with no
output); duplicates (output keys written more than once: the bucket keeps every
version); writes (PUTs of outputs); renders/job (writes per output key: 1.00 when no
job's render was published twice); attempts (attempts x jobs); down (seconds the part
was gone); recovery (seconds from the fault to the first job completing after the part
came back; for a kill, to the killed job completing again).

`python -m bench.faults [--jobs 500] [--only kill,kill-same-name,child-kill,same-name,
redis,redis-outage,s3] [--fsync always|everysec] [--s3-down 3] [--redis-down 40]`.
Loopback only; all it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.states import JobState
from testbed.faults import (
    FaultRig,
    Tally,
    dismantle,
    make_rig,
    tally,
    wait_finished,
    wait_succeeded,
)
from testbed.workers import WorkerProcess
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore
from workers.heartbeat import live_workers

MID_BATCH = 0.2  # the fault strikes once this share of the batch has succeeded
CANCELED_TAIL = 10  # the last jobs queued, canceled just before each fault
FINISH_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class FaultReport:
    """One scenario's outcome. `recovery_s` is None when no job completed after it."""

    scenario: str
    tally: Tally
    canceled: list[str]  # the jobs whose cancellation was asked
    redelivered: list[str]  # jobs that ran more than once
    finished: bool  # every job reached a final state
    down_s: float
    recovery_s: float | None
    served_after: dict[str, int]  # worker name -> jobs it completed once the part was back


@dataclass
class Batch:
    """A batch queued on a rig, served by two final-lane workers."""

    rig: FaultRig
    name: str
    ids: list[str]
    canceled: list[str]

    @property
    def store(self) -> JobStore:
        return self.rig.store

    def reach_mid_batch(self) -> None:
        count = int(len(self.ids) * MID_BATCH)
        if not wait_succeeded(self.store, self.ids, count, timeout=120):
            raise TimeoutError(f"{self.name}: {count} jobs did not succeed within 120 s")

    def cancel_tail(self) -> None:
        """Cancel the last jobs queued; they are still waiting when the fault strikes."""
        self.canceled = self.ids[-CANCELED_TAIL:]
        for job_id in self.canceled:
            self.store.cancel(job_id)

    def report(self, scenario: str, fault_at: float, back_at: float) -> FaultReport:
        """Wait for the batch to end (or stall), then judge it."""
        finished = wait_finished(self.store, self.ids, FINISH_TIMEOUT_S)
        records = [r for r in self.store.get_many(self.ids) if r is not None]
        later = [r for r in records if r.succeeded_at and r.succeeded_at > back_at]
        after = [r.succeeded_at for r in later if r.succeeded_at]
        return FaultReport(
            scenario=scenario,
            tally=tally(self.rig, self.ids, self.name),
            canceled=self.canceled,
            redelivered=[r.id for r in records if r.attempts > 1],
            finished=finished,
            down_s=back_at - fault_at,
            recovery_s=min(after) - fault_at if after else None,
            served_after=dict(Counter((r.worker or "?").split("@")[0] for r in later)),
        )


def start_batch(
    rig: FaultRig, name: str, workers: Sequence[str], concurrency: int = 1, **env: str
) -> Batch:
    """Start two workers (`env` on top of the rig's), queue the batch, reach mid-batch."""
    rig.workers.env.update(env)
    for worker in workers:
        rig.workers.start(lane="final", name=worker, concurrency=concurrency)
    batch = Batch(rig, name, rig.submit(name), [])
    batch.reach_mid_batch()
    batch.cancel_tail()
    return batch


def wait_beating(rig: FaultRig, worker: WorkerProcess, timeout: float = 60) -> None:
    """Until this very process beats (its name may still show its predecessor's beat)."""
    client = rig.client
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beats = live_workers(client, Keyspace())
        if any(h.startswith(worker.name) and b.get("pid") == worker.pid for h, b in beats.items()):
            return
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker {worker.name} exited; see {worker.log}")
        time.sleep(0.05)
    raise TimeoutError(f"worker {worker.name} did not beat within {timeout} s")


def wait_job_started(batch: Batch, worker: str, within_s: float = 0.03) -> str:
    """Until `worker` has just started a job (so a kill now catches it mid-render)."""
    client = batch.rig.client
    keys = [batch.store.keys.job(job_id) for job_id in batch.ids]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "state", "worker", "running_at")
        now = time.time()
        for job_id, (state, held_by, since) in zip(batch.ids, pipe.execute(), strict=True):
            fresh = since is not None and now - float(since) < within_s
            if state == b"running" and (held_by or b"").startswith(worker.encode()) and fresh:
                return job_id
    raise TimeoutError(f"{worker} started no job within 60 s")


def kill_a_worker(rig: FaultRig, *, same_name: bool = False, **env: str) -> FaultReport:
    """SIGKILL one of two workers (its whole process group) mid-render; start it again."""
    batch = start_batch(rig, "kill", ("victim", "steady"), **env)
    victim = rig.workers.started[0]
    wait_job_started(batch, victim.name)
    victim.kill()
    fault_at = time.time()
    name = victim.name if same_name else f"{victim.name}-restarted"
    restarted = rig.workers.start(lane="final", name=name, wait=False)
    wait_beating(rig, restarted)
    scenario = "worker kill" + (", same name" if same_name else "")
    report = batch.report(scenario, fault_at, time.time())
    return dataclasses.replace(report, recovery_s=_redelivered_done(batch, report, fault_at))


def _redelivered_done(batch: Batch, report: FaultReport, fault_at: float) -> float | None:
    """Seconds from the kill until the last job it orphaned completed elsewhere."""
    records = batch.store.get_many(report.redelivered)
    done = [r.succeeded_at for r in records if isinstance(r, JobRecord) and r.succeeded_at]
    return max(done) - fault_at if done and len(done) == len(records) else None


def kill_a_pool_child(rig: FaultRig) -> FaultReport:
    """SIGKILL the pool process rendering a job on a `-c 2` worker (the worker lives):
    Celery requeues its message and the sweep would too; it must render once more, once."""
    batch = start_batch(rig, "child", ("w1", "w2"), concurrency=2)
    for _ in range(5):  # a render can end between being seen and the kill: aim again
        job_id = wait_job_started(batch, "w1", within_s=0.3)
        record = batch.store.get(job_id)
        if record is None or record.pid is None:
            raise RuntimeError(f"job {job_id} records no pid")
        os.kill(record.pid, signal.SIGKILL)
        fault_at = time.time()
        after = batch.store.get(job_id)
        if after is None or not after.succeeded_at or after.succeeded_at > fault_at:
            break  # the kill caught it mid-render
    report = batch.report("pool child kill (-c 2)", fault_at, fault_at)
    return dataclasses.replace(report, recovery_s=_redelivered_done(batch, report, fault_at))


def start_under_a_live_name(rig: FaultRig) -> FaultReport:
    """Start a third worker under the name of a live one mid-batch: it must refuse, and
    no job may be taken from the live owner of the name."""
    batch = start_batch(rig, "same-name", ("w1", "w2"))
    fault_at = time.time()
    twin = rig.workers.start(lane="final", name="w1", wait=False)
    refused = twin.proc.wait(timeout=60) != 0
    report = batch.report(
        "same-name start" + ("" if refused else " (NOT refused)"), fault_at, time.time()
    )
    return dataclasses.replace(report, recovery_s=None)


def restart_redis(rig: FaultRig, down_s: float = 2.0) -> FaultReport:
    """SIGKILL redis-server mid-render, keep it down `down_s`, restart it in place."""
    batch = start_batch(rig, "redis", ("w1", "w2"))
    wait_job_started(batch, "w1")
    rig.redis.kill()
    fault_at = time.time()
    time.sleep(down_s)
    rig.redis.start()
    what = "redis restart" if down_s < 10 else f"redis outage {down_s:.0f} s"
    return batch.report(f"{what} (AOF {rig.redis.fsync})", fault_at, time.time())


def s3_outage(rig: FaultRig, down_s: float = 3.0) -> FaultReport:
    """SIGKILL the S3 server mid-batch; start it again (same ports, same data) `down_s` later."""
    batch = start_batch(rig, "s3", ("w1", "w2"))
    rig.s3.stop(kill=True)
    fault_at = time.time()
    time.sleep(down_s)
    rig.s3.start()
    return batch.report(f"s3 outage ({down_s:.0f} s)", fault_at, time.time())


def scenarios(args: argparse.Namespace) -> dict[str, Callable[[FaultRig], FaultReport]]:
    # Production heartbeat timing for the same-name restart: the race it loses is real.
    production = {"DARKROOM_HEARTBEAT_INTERVAL_S": "1", "DARKROOM_HEARTBEAT_TTL_S": "4"}
    return {
        "kill": kill_a_worker,
        "kill-same-name": lambda rig: kill_a_worker(rig, same_name=True, **production),
        "child-kill": kill_a_pool_child,
        "same-name": start_under_a_live_name,
        "redis": restart_redis,
        "redis-outage": lambda rig: restart_redis(rig, args.redis_down),
        "s3": lambda rig: s3_outage(rig, args.s3_down),
    }


def row(report: FaultReport) -> list[object]:
    t = report.tally
    recovery = "-" if report.recovery_s is None else f"{report.recovery_s:.1f}"
    return [
        report.scenario, t.jobs, t.count(JobState.SUCCEEDED), t.count(JobState.CANCELED),
        t.count(JobState.FAILED), len(t.lost), len(t.duplicates), t.writes,
        f"{t.writes / max(t.objects, 1):.2f}",
        " ".join(f"{n}x{count}" for n, count in t.attempts.items()),
        f"{report.down_s:.1f}", recovery,
    ]  # fmt: skip


HEADER = ["scenario", "jobs", "succeeded", "canceled", "failed", "lost", "duplicates", "writes",
          "renders/job", "attempts", "down s", "recovery s"]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    from bench.harness import table
    from testbed.s3 import start_seaweed

    parser = argparse.ArgumentParser(description="darkroom under faults")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument(
        "--only", default="kill,kill-same-name,child-kill,same-name,redis,redis-outage,s3"
    )
    parser.add_argument("--fsync", choices=["always", "everysec"], default="always")
    parser.add_argument("--s3-down", type=float, default=3.0)
    parser.add_argument("--redis-down", type=float, default=40.0)
    args = parser.parse_args(argv)
    chosen = scenarios(args)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(prefix="darkroom-faults-") as tmp:
        (Path(tmp) / "s3").mkdir()
        s3 = start_seaweed(Path(tmp) / "s3")
        try:
            for name in args.only.split(","):
                rig = make_rig(s3, Path(tmp) / name, args.jobs, fsync=args.fsync)
                try:
                    rows.append(row(chosen[name](rig)))
                finally:
                    dismantle(rig)
                print(table(rows[-1:], HEADER).splitlines()[-1], flush=True)
        finally:
            s3.stop()
    print()
    print(table(rows, HEADER))


if __name__ == "__main__":
    main()
