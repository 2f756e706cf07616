"""Proof under faults: 500 jobs through two real workers while a part of the system breaks.

Scenarios (each on its own append-only Redis, the same SeaweedFS, a fresh versioned bucket):

1. worker kill: SIGKILL a worker's whole process group mid-batch, start a new one;
2. redis restart: SIGKILL redis-server (AOF on) mid-batch, restart it on the same port
   and data dir after a pause; workers must reconnect by themselves;
3. s3 outage: stop the S3 server mid-batch for a few seconds while jobs write outputs.

Each prints jobs, lost (not finished, or succeeded with no output), duplicates (output
keys written more than once: the bucket is versioned), attempts and recovery seconds
(from the fault to the first job completing after it; for a kill, to the killed
worker's job completing on another worker).

`python -m bench.faults [--jobs N] [--only kill,redis,s3] [--fsync always|everysec]`.
Loopback only; everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobs.states import JobState
from jobs.store import JobStore
from tests.fixtures.faults import (
    FaultRig,
    Tally,
    first_success_after,
    make_rig,
    remove_versioned_bucket,
    tally,
    wait_finished,
    wait_succeeded,
)

MID_BATCH = 0.2  # the fault strikes once this share of the batch has succeeded
CANCELED_TAIL = 10  # the last jobs queued are canceled just before each fault
FINISH_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class FaultReport:
    """One scenario's outcome; `recovery_s` is None when nothing completed after the fault."""

    scenario: str
    tally: Tally
    canceled: list[str]
    down_s: float
    recovery_s: float | None
    finished: bool
    notes: dict[str, object] = field(default_factory=dict)


@dataclass
class Batch:
    """A batch queued on the rig, with two final-lane workers serving it."""

    rig: FaultRig
    name: str
    ids: list[str]

    @property
    def store(self) -> JobStore:
        return self.rig.store()

    def reach_mid_batch(self) -> None:
        count = int(len(self.ids) * MID_BATCH)
        if not wait_succeeded(self.store, self.ids, count, timeout=120):
            raise TimeoutError(f"{self.name}: {count} jobs did not succeed within 120 s")

    def cancel_tail(self) -> list[str]:
        """Ask to cancel the last jobs queued; they have not started yet."""
        tail = self.ids[-CANCELED_TAIL:]
        for job_id in tail:
            self.store.cancel(job_id)
        return tail

    def report(self, scenario: str, fault_at: float, restored_at: float, **notes: object) -> FaultReport:
        finished = wait_finished(self.store, self.ids, FINISH_TIMEOUT_S)
        records = self.store.get_many(self.ids)
        first = first_success_after(records, restored_at)
        return FaultReport(
            scenario=scenario,
            tally=tally(self.rig, self.ids, self.name),
            canceled=self.canceled,
            down_s=restored_at - fault_at,
            recovery_s=None if first is None else first - fault_at,
            finished=finished,
            notes=notes,
        )

    canceled: list[str] = field(default_factory=list)


def start_batch(rig: FaultRig, name: str, workers: Sequence[str] = ("w1", "w2")) -> Batch:
    for worker in workers:
        rig.workers.start(lane="final", name=worker)
    return Batch(rig, name, rig.submit(name))


def running_on(store: JobStore, ids: Sequence[str], worker: str, timeout: float) -> str:
    """The id of a job that `worker` is running now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in store.get_many(list(ids)):
            if record and record.state is JobState.RUNNING and (record.worker or "").startswith(worker):
                return record.id
        time.sleep(0.02)
    raise TimeoutError(f"{worker} ran no job within {timeout} s")


def kill_a_worker(rig: FaultRig) -> FaultReport:
    """SIGKILL one of two workers (whole process group) mid-batch; start a fresh one."""
    batch = start_batch(rig, "kill", workers=("victim", "steady"))
    batch.reach_mid_batch()
    batch.canceled = batch.cancel_tail()
    orphan = running_on(batch.store, batch.ids, "victim", timeout=30)
    victim = rig.workers.started[0]
    victim.kill()
    fault_at = time.time()
    rig.workers.start(lane="final", name="victim-restarted")
    restored_at = time.time()
    report = batch.report("worker kill", fault_at, restored_at, orphan=orphan)
    record = batch.store.get(orphan)
    orphan_done = record.succeeded_at if record and record.succeeded_at else None
    return FaultReport(
        **{
            **report.__dict__,
            "recovery_s": None if orphan_done is None else orphan_done - fault_at,
            "notes": {
                "orphan": orphan,
                "orphan_attempts": record.attempts if record else None,
                "worker_restart_s": restored_at - fault_at,
            },
        }
    )


def restart_redis(rig: FaultRig, down_s: float = 2.0) -> FaultReport:
    """SIGKILL redis-server mid-batch, keep it down `down_s`, restart it in place."""
    batch = start_batch(rig, "redis")
    batch.reach_mid_batch()
    batch.canceled = batch.cancel_tail()
    rig.redis.kill()
    fault_at = time.time()
    time.sleep(down_s)
    rig.redis.start()
    restored_at = time.time()
    return batch.report(f"redis restart (AOF {rig.redis.fsync})", fault_at, restored_at)


def s3_outage(rig: FaultRig, down_s: float = 3.0) -> FaultReport:
    """Stop the S3 server mid-batch for `down_s` seconds (plus its stop and start)."""
    batch = start_batch(rig, "s3")
    batch.reach_mid_batch()
    batch.canceled = batch.cancel_tail()
    fault_at = time.time()
    rig.s3.stop(kill=True)
    time.sleep(down_s)
    rig.s3.start()
    restored_at = time.time()
    return batch.report("s3 outage", fault_at, restored_at)


SCENARIOS: dict[str, Callable[[FaultRig], FaultReport]] = {
    "kill": kill_a_worker,
    "redis": restart_redis,
    "s3": s3_outage,
}


def main(argv: Sequence[str] | None = None) -> None:
    from bench.harness import table
    from tests.fixtures.s3 import start_seaweed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--fsync", choices=["always", "everysec"], default="always")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="darkroom-faults-") as tmp:
        (Path(tmp) / "s3").mkdir()
        s3 = start_seaweed(Path(tmp) / "s3")
        try:
            for name in args.only.split(","):
                rig = make_rig(s3, Path(tmp) / name, args.jobs, fsync=args.fsync)
                try:
                    rows.append(_row(SCENARIOS[name](rig)))
                finally:
                    rig.close()
                    if not s3.running:
                        s3.start()
                    remove_versioned_bucket(s3.client(), rig.bucket)
        finally:
            s3.stop()
    header = ["scenario", "jobs", "succeeded", "canceled", "lost", "duplicates", "writes",
              "attempts", "down s", "recovery s"]  # fmt: skip
    print(table(rows, header))


def _row(report: FaultReport) -> list[object]:
    t = report.tally
    recovery = "-" if report.recovery_s is None else f"{report.recovery_s:.1f}"
    attempts = " ".join(f"{n}x{count}" for n, count in t.attempts.items())
    return [
        report.scenario, t.jobs, t.succeeded, t.states.get("canceled", 0), len(t.lost),
        len(t.duplicates), t.writes, attempts, f"{report.down_s:.1f}", recovery,
    ]  # fmt: skip


if __name__ == "__main__":
    main()
