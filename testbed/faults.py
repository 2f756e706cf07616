"""Fault injection: a rig of real processes to break, and the tally that judges the damage.

A `FaultRig` is a private redis-server with an append-only file (killable and restartable
on the same port and data dir), the session's SeaweedFS with a fresh *versioned* bucket
for outputs, real `darkroom worker` processes, and a folder of small distinct photos.
Versioning is what proves "each output written once": every PUT adds a version, so a job
that ran twice to completion leaves two versions of its key, although the deterministic
key makes the second object look exactly like the first.

The scenarios that break the rig live in `bench.faults`, so `python -m bench.faults` and
`tests/integration/test_faults.py` run the same code; `make_rig` builds one, `dismantle`
stops everything it started by PID and removes its bucket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis import Redis

from jobs.schema import Lane, OutputSpec, Recipe, Step
from jobs.settings import Settings
from jobs.states import JobState
from producer.batch import submit_batch
from producer.sources import SourceItem
from testbed.workers import WorkerFactory
from transport.embedded import free_port, ping, redis_server_binary
from transport.keyspace import Keyspace
from transport.store import JobRecord, JobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from testbed.s3 import SeaweedS3

# Three classic steps on a 240x180 photo, WebP out: ~0.1 s of worker time a job, most of
# it inside the task, so a fault nearly always strikes a job in flight, and 500 jobs
# keep two workers busy for ~30 s.
CHEAP = Recipe(
    name="faults",
    steps=[
        Step(op="denoise", params={"strength": 10}),
        Step(op="auto_levels"),
        Step(op="resize", params={"max_side": 128}),
    ],
)
PHOTO_SIZE = (240, 180)
OUTPUT = OutputSpec(format="webp", quality=80)
JOBS = 500
# Longer than the sweep's grace for a delivered job that never started (30 s).
STALL_S = 40.0
WORKER_ENV = {"DARKROOM_HEARTBEAT_INTERVAL_S": "0.5", "DARKROOM_HEARTBEAT_TTL_S": "2"}


@dataclass
class AofRedis:
    """redis-server with `appendonly yes` and the given `appendfsync`, restartable in place."""

    dir: Path
    port: int
    fsync: str = "always"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start on the same port and data dir; the AOF is replayed before PING answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.url, timeout=0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start; see {self.dir}/redis.log")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, so only what the append-only file holds survives."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def _command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir.resolve()),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--logfile", str((self.dir / "redis.log").resolve()),
        ]  # fmt: skip


def write_photos(folder: Path, count: int) -> list[SourceItem]:
    """`count` distinct small JPEGs: windows sliding over a real photo."""
    from samples.photos import load_photo

    folder.mkdir(parents=True, exist_ok=True)
    photo = load_photo("coffee")  # 600x400
    width, height = PHOTO_SIZE
    items = []
    for index in range(count):
        left, top = (index * 7) % (600 - width), (index * 13) % (400 - height)
        path = folder / f"p{index:04d}.jpg"
        photo.crop((left, top, left + width, top + height)).save(path, quality=90)
        items.append(SourceItem(uri=path.resolve().as_uri(), source=str(path), name=path.stem))
    return items


@dataclass
class FaultRig:
    """Everything a fault scenario breaks and inspects; `close()` stops what it started."""

    redis: AofRedis
    s3: SeaweedS3
    bucket: str
    workers: WorkerFactory
    items: list[SourceItem]

    @cached_property
    def client(self) -> Redis:
        # One client for the rig's life: redis-py reconnects by itself after a restart.
        return Redis.from_url(self.redis.url, socket_timeout=5)

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.client, Keyspace())

    def settings(self) -> Settings:
        return self.s3.settings(redis_url=self.redis.url, output=f"s3://{self.bucket}/")

    def submit(self, batch: str) -> list[str]:
        """One job per photo, outputs under `s3://<bucket>/<batch>/`; ids in queue order."""
        handle = submit_batch(
            self.settings(),
            self.client,
            self.items,
            CHEAP,
            mode=Lane.FINAL,
            out=f"s3://{self.bucket}/{batch}/",
            batch=batch,
            output_spec=OUTPUT,
        )
        if handle.report.new != len(self.items):
            raise RuntimeError(f"batch {batch}: {handle.report}")
        by_source = {src: job for job, src in self.store.batch_members(batch).items()}
        return [by_source[item.source] for item in self.items]

    def close(self) -> None:
        self.workers.stop_all()
        self.client.close()
        self.redis.stop()


def make_rig(s3: SeaweedS3, tmp: Path, jobs: int = JOBS, *, fsync: str = "always") -> FaultRig:
    """A rig with its own AOF Redis, a fresh versioned bucket and `jobs` photos."""
    server = AofRedis(tmp / "redis", free_port(), fsync)
    server.start()
    bucket = f"faults-{os.urandom(5).hex()}"
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    env = {
        "DARKROOM_REDIS_URL": server.url,
        "DARKROOM_OUTPUT": f"s3://{bucket}/",
        "DARKROOM_HOME": str(tmp / "home"),
        "DARKROOM_S3_ENDPOINT_URL": s3.endpoint_url,
        "DARKROOM_S3_ACCESS_KEY_ID": s3.access_key,
        "DARKROOM_S3_SECRET_ACCESS_KEY": s3.secret_key,
        "PYTHONUNBUFFERED": "1",
        **WORKER_ENV,
    }
    workers = WorkerFactory(server.url, env, tmp)
    return FaultRig(server, s3, bucket, workers, write_photos(tmp / "photos", jobs))


def dismantle(rig: FaultRig) -> None:
    """Stop the rig's processes, bring S3 back if a scenario left it down, drop the bucket."""
    rig.close()
    if not rig.s3.running:
        rig.s3.start()
    remove_versioned_bucket(rig.s3.client(), rig.bucket)


def remove_versioned_bucket(client: S3Client, bucket: str) -> None:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            client.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
    client.delete_bucket(Bucket=bucket)


# -- judging the outcome -------------------------------------------------------------


def output_writes(client: S3Client, bucket: str, prefix: str) -> Counter[str]:
    """key -> how many times it was written (its versions)."""
    writes: Counter[str] = Counter()
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for version in page.get("Versions", []):
            writes[version["Key"]] += 1
    return writes


@dataclass(frozen=True)
class Tally:
    """What became of a batch: states, lost jobs, output writes and attempts."""

    jobs: int
    states: dict[str, int]
    lost: list[str]  # no record, not finished, or succeeded with no output
    objects: int  # distinct output keys in the bucket
    writes: int  # PUTs of those keys (object versions)
    duplicates: list[str]  # keys written more than once
    stray: list[str]  # keys that no succeeded job names as its output
    attempts: dict[int, int]  # attempts -> jobs

    def count(self, state: JobState) -> int:
        return self.states.get(state.value, 0)


def tally(rig: FaultRig, ids: Sequence[str], batch: str) -> Tally:
    records = rig.store.get_many(list(ids))
    writes = output_writes(rig.s3.client(), rig.bucket, f"{batch}/")
    known = [r for r in records if r is not None]
    outputs = {_key(r.output, rig.bucket) for r in known if r.output}
    return Tally(
        jobs=len(ids),
        states=dict(Counter(r.state.value for r in known)),
        lost=[i for i, r in zip(ids, records, strict=True) if not _ended(r, writes, rig.bucket)],
        objects=len(writes),
        writes=sum(writes.values()),
        duplicates=sorted(key for key, count in writes.items() if count > 1),
        stray=sorted(set(writes) - outputs),
        attempts=dict(sorted(Counter(r.attempts for r in known).items())),
    )


def _key(uri: str, bucket: str) -> str:
    return uri.removeprefix(f"s3://{bucket}/")


def _ended(record: JobRecord | None, writes: Counter[str], bucket: str) -> bool:
    if record is None or not record.state.terminal:
        return False
    if record.state is JobState.SUCCEEDED:
        return record.output is not None and writes[_key(record.output, bucket)] > 0
    return True


def wait_finished(
    store: JobStore, ids: Sequence[str], timeout: float, stall_s: float = STALL_S
) -> bool:
    """Poll until every job is terminal. False at `timeout`, or once no job has finished
    for `stall_s`: a stranded job would otherwise hold the wait to its end. A Redis that
    is down counts as no progress."""
    deadline = time.monotonic() + timeout
    finished, progressed = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - progressed < stall_s:
        with contextlib.suppress(redis.RedisError):
            now = sum(s is not None and s.terminal for s in store.states(list(ids)))
            if now == len(ids):
                return True
            if now != finished:
                finished, progressed = now, time.monotonic()
        time.sleep(0.25)
    return False


def wait_succeeded(store: JobStore, ids: Sequence[str], count: int, timeout: float) -> bool:
    """Poll until at least `count` of the jobs succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(s is JobState.SUCCEEDED for s in store.states(list(ids))) >= count:
            return True
        time.sleep(0.05)
    return False
