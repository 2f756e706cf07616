"""What the benchmarks share: a private Redis, worker processes, percentiles, tables."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from transport.embedded import EmbeddedRedis, start_redis
from transport.keyspace import Keyspace
from workers.cli import worker_argv
from workers.heartbeat import stop_process_group, wait_until_beating

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Lab:
    """A private Redis and a scratch folder; workers started here are stopped here."""

    server: EmbeddedRedis
    tmp: Path
    procs: list[subprocess.Popen[bytes]]

    @property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.server.url)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DARKROOM_REDIS_URL": self.server.url,
            "DARKROOM_OUTPUT": str(self.tmp / "out"),
            "DARKROOM_HOME": str(self.tmp / "home"),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def worker(
        self,
        lane: str,
        concurrency: int = 1,
        name: str | None = None,
        tier: str = "cpu",
        **env: str,
    ) -> subprocess.Popen[bytes]:
        name = name or f"bench-{lane}-{len(self.procs)}"
        argv = worker_argv(tier, lane, concurrency, name=name, loglevel="warning")
        return self.start(argv, name, [name], **env)

    def start(
        self, argv: list[str], log_name: str, beating: Sequence[str], **env: str
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in its own session (log: `<tmp>/<log_name>.log`), stopped with the
        lab; wait until a worker beats under each name prefix in `beating`."""
        log = (self.tmp / f"{log_name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        for prefix in beating:
            wait_until_beating(self.client, Keyspace(), prefix, proc=proc, timeout_s=90)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process_group(proc)


@contextmanager
def lab() -> Iterator[Lab]:
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as tmp:
        server = start_redis(Path(tmp) / "redis", persistent=False)
        here = Lab(server, Path(tmp), [])
        try:
            yield here
        finally:
            for proc in here.procs:
                here.stop(proc)
            server.stop()
