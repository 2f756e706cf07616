"""Load: SaaS previews and final submissions through a real `darkroom api`, for a fixed time.

Everything runs on 127.0.0.1 and is stopped by PID: a private Redis, one preview worker
and one final worker (cpu tier, as `darkroom worker` runs them), a final backlog queued
first (a studio batch, so the final worker is busy throughout), an API key, `darkroom
api`, and locust, headless, with a fixed number of users at fixed rates
(`bench/locustfile.py`): previews are `POST /v1/jobs?wait=preview` (held until rendered),
finals `POST /v1/jobs` (202). It prints:

- preview latency p50/p95/p99 as the client sees it, and the part of it the job spent
  queued (Redis timestamps: queued -> running);
- final throughput: final jobs completed per second during the run (backlog and API
  finals alike), against the offered final rate.

`python -m bench.load [--duration 60] [--preview-users 4 --preview-rate 1]
[--final-users 2 --final-rate 1] [--backlog 1000]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, Lab, lab, percentile, table
from jobs.schema import Lane, OutputSpec, Recipe, Step
from jobs.settings import Settings
from producer.api_keys import KeyLimits, KeyRing
from producer.batch import submit_batch
from producer.sources import SourceItem
from testbed.api import start_api
from transport.keyspace import Keyspace
from transport.messages import priority_lists

BACKLOG = Recipe(
    name="backlog",
    steps=[Step(op="denoise", params={"strength": 8}), Step(op="auto_levels")],
)
PHOTO_SIDE = (320, 240)


@dataclass(frozen=True)
class Load:
    duration_s: int
    preview_users: int
    preview_rate: float  # requests per second per user
    final_users: int
    final_rate: float
    backlog: int

    @property
    def users(self) -> int:
        return self.preview_users + self.final_users


def write_photo(path: Path) -> Path:
    from samples.photos import load_photo

    load_photo("astronaut").resize(PHOTO_SIDE).save(path, quality=88)
    return path


def queue_backlog(here: Lab, photo: Path, count: int) -> None:
    """A studio batch on the final lane, queued before the load starts."""
    items = [SourceItem(photo.resolve().as_uri(), str(photo), f"b{i:05d}") for i in range(count)]
    settings = Settings(redis_url=here.server.url, output=str(here.tmp / "out"))
    submit_batch(settings, here.client, items, BACKLOG, mode=Lane.FINAL, batch="backlog",
                 output_spec=OutputSpec(quality=80))  # fmt: skip


@contextmanager
def running_api(here: Lab) -> Iterator[str]:
    """`darkroom api` (no webhook deliverer) on a free loopback port; yields its base URL."""
    server = start_api(here.server.url, here.tmp, "--no-webhooks", ready_timeout=60)
    try:
        yield server.url
    finally:
        server.stop(timeout=15)


@dataclass(frozen=True)
class Recorded:
    """What the locustfile wrote: every request's latency (ms) and failure, by name."""

    latency_ms: dict[str, list[float]]
    failures: dict[str, list[str]]


def run_locust(here: Lab, url: str, key: str, photo: Path, load: Load) -> Recorded:
    """Run locust headless for `load.duration_s`; returns what the locustfile recorded."""
    out = here.tmp / "locust.json"
    env = here.env(
        DARKROOM_LOAD_KEY=key,
        DARKROOM_LOAD_IMAGE=str(photo),
        DARKROOM_LOAD_PREVIEW_USERS=str(load.preview_users),
        DARKROOM_LOAD_PREVIEW_RATE=str(load.preview_rate),
        DARKROOM_LOAD_FINAL_USERS=str(load.final_users),
        DARKROOM_LOAD_FINAL_RATE=str(load.final_rate),
        DARKROOM_LOAD_OUT=str(out),
    )
    argv = [
        str(Path(sys.executable).parent / "locust"),
        "-f", str(ROOT / "bench" / "locustfile.py"),
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "--host", url,
        "-u", str(load.users), "-r", str(load.users),
        "-t", f"{load.duration_s}s", "--stop-timeout", "15",
    ]  # fmt: skip
    log = here.tmp / "locust.log"
    with log.open("wb") as sink:
        done = subprocess.run(
            argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            timeout=load.duration_s + 90, check=False,
        )  # fmt: skip
    if not out.exists():
        raise RuntimeError(f"locust exited {done.returncode}:\n{log.read_text()[-3000:]}")
    data = json.loads(out.read_text())
    return Recorded(data["latency_ms"], data["failures"])


@dataclass(frozen=True)
class ServerSide:
    """What Redis says happened during the run window."""

    preview_queue_ms: list[float]
    finals_done: int
    finals_submitted: int
    backlog_left: int


def server_side(here: Lab, began: float, ended: float) -> ServerSide:
    client = here.client
    names = list(client.scan_iter(match=f"{Keyspace().prefix}:job:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, "queue", "queued_at", "running_at", "succeeded_at", "batch")
    waits, done, submitted = [], 0, 0
    for queue, queued, running, succeeded, batch in pipe.execute():
        lane = (queue or b"").decode().rsplit(".", 1)[-1]
        if lane == "preview" and queued and running:
            waits.append((float(running) - float(queued)) * 1000)
        if lane == "final" and succeeded and began <= float(succeeded) <= ended:
            done += 1
        if lane == "final" and not batch:
            submitted += 1
    left = sum(client.llen(k) for k in priority_lists("cpu.final"))
    return ServerSide(waits, done, submitted, left)


@dataclass(frozen=True)
class LoadResult:
    load: Load
    recorded: Recorded
    server: ServerSide
    window_s: float

    @property
    def previews(self) -> list[float]:
        return self.recorded.latency_ms.get("preview", [])

    @property
    def finals(self) -> list[float]:
        return self.recorded.latency_ms.get("final", [])

    def failed(self, name: str) -> list[str]:
        return self.recorded.failures.get(name, [])


def measure(load: Load) -> LoadResult:
    """Bring everything up on loopback, run locust, read Redis, stop everything."""
    with lab() as here:
        photo = write_photo(here.tmp / "photo.jpg")
        here.worker("preview", name="load-preview")
        here.worker("final", name="load-final")
        queue_backlog(here, photo, load.backlog)
        limits = KeyLimits(rate_per_min=100_000, concurrency=100_000)
        key = KeyRing(here.client, Keyspace()).create("load", limits).key
        with running_api(here) as url:
            began = time.time()
            recorded = run_locust(here, url, key, photo, load)
            ended = time.time()
        return LoadResult(load, recorded, server_side(here, began, ended), ended - began)


def report(result: LoadResult) -> str:
    load, server, window_s = result.load, result.server, result.window_s
    previews, finals = result.previews, result.finals
    rows: list[list[object]] = [
        ["preview req/s offered / answered", f"{load.preview_users * load.preview_rate:.1f}",
         f"{len(previews) / window_s:.1f}"],
        ["preview latency p50 / p95 / p99 ms", _ms(previews, 50),
         f"{_ms(previews, 95)} / {_ms(previews, 99)}"],
        ["preview queue wait p50 / p95 ms", _ms(server.preview_queue_ms, 50),
         _ms(server.preview_queue_ms, 95)],
        ["preview failures", len(result.failed("preview")), ""],
        ["final req/s offered / accepted", f"{load.final_users * load.final_rate:.1f}",
         f"{len(finals) / window_s:.1f}"],
        ["final submit latency p50 / p95 ms", _ms(finals, 50), _ms(finals, 95)],
        ["final jobs completed / s (all finals)", f"{server.finals_done / window_s:.2f}",
         f"{server.finals_done} in {window_s:.0f} s"],
        ["final backlog left / API finals queued", server.backlog_left, server.finals_submitted],
        ["final failures", len(result.failed("final")), ""],
    ]  # fmt: skip
    lines = [table(rows, ["load", "value", "detail"])]
    for name, messages in result.recorded.failures.items():
        if messages:
            lines.append(f"{name} failures, first: {messages[0]}")
    return "\n".join(lines)


def _ms(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q):.0f}" if values else "-"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="darkroom API under load (locust, headless)")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--preview-users", type=int, default=4)
    parser.add_argument("--preview-rate", type=float, default=1.0, help="req/s per user")
    parser.add_argument("--final-users", type=int, default=2)
    parser.add_argument("--final-rate", type=float, default=1.0, help="req/s per user")
    parser.add_argument("--backlog", type=int, default=1000, help="final jobs queued first")
    args = parser.parse_args(argv)
    load = Load(
        duration_s=args.duration,
        preview_users=args.preview_users,
        preview_rate=args.preview_rate,
        final_users=args.final_users,
        final_rate=args.final_rate,
        backlog=args.backlog,
    )
    print(report(measure(load)))


if __name__ == "__main__":
    main()
