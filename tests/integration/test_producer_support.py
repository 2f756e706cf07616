"""Helpers for the producer's integration tests (this module holds no tests).

`run_cli` invokes the real `darkroom` command group with click's CliRunner against
the fixture's Redis. `play_worker` does to Redis what a worker does to a job (takes
its message off the list, moves its state, writes an output file), so the producer's
reading side can be checked without starting Celery; end-to-end runs with real
workers are the worker suite's.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import redis
from click.testing import CliRunner, Result
from PIL import Image, ImageOps

from darkroom.cli import main
from jobs.schema import Job
from jobs.settings import Settings
from jobs.states import JobState
from storage import open_location, read_uri
from transport.embedded import EmbeddedRedis
from transport.keyspace import Keyspace
from transport.messages import priority_lists
from transport.store import JobStore


@dataclass
class Env:
    """What a test's CLI runs see: Redis URL, home and default output folder."""

    redis_url: str
    home: Path
    out: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(redis_url=self.redis_url, home=self.home, output=str(self.out))

    def run(self, *args: str) -> Result:
        env: dict[str, str | None] = {
            "DARKROOM_REDIS_URL": self.redis_url,
            "DARKROOM_HOME": str(self.home),
            "DARKROOM_OUTPUT": str(self.out),
            "DARKROOM_CONFIG": None,
            **self.extra,
        }
        return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


def new_env(redis_server: EmbeddedRedis, tmp_path: Path) -> Env:
    """What one test's CLI runs see; pair it with `redis_client`, which flushes Redis."""
    return Env(redis_server.url, tmp_path / "home", tmp_path / "out")


def make_photos(root: Path, names: list[str], size: tuple[int, int] = (96, 64)) -> Path:
    """Small real JPEG/PNG files, each a different colour."""
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (40 * i % 256, 90, 200 - 20 * i % 200)).save(path)
    return root


def messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The jobs in every priority list of `queue`, decoded from kombu's envelope."""
    found = []
    for key in priority_lists(queue):
        for raw in client.lrange(key, 0, -1):
            found.append(decode(raw))
    return found


def decode(raw: Any) -> dict[str, Any]:
    envelope = json.loads(raw)
    _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return {"id": envelope["headers"]["id"], "job": kwargs["job"], "envelope": envelope}


def depth(client: redis.Redis, queue: str) -> int:
    return sum(int(client.llen(key)) for key in priority_lists(queue))


def store_of(client: redis.Redis, settings: Settings) -> JobStore:
    return JobStore(client, Keyspace(settings.key_prefix), ttl_s=settings.job_ttl_s)


def take(client: redis.Redis, queue: str) -> list[Job]:
    """Pop every message of `queue`, highest priority first, as workers would."""
    jobs = []
    for key in priority_lists(queue):
        while (raw := client.rpop(key)) is not None:
            jobs.append(Job.from_json(decode(raw)["job"]))
    return jobs


def play_worker(
    store: JobStore, job: Job, *, fail: str | None = None, settings: Settings | None = None
) -> None:
    """Run `job` the way a worker records it: running, then succeeded with an output at
    `<output.uri>/<key>.<ext>` (the input inverted), or failed with a code."""
    store.transition(job.id, JobState.RUNNING, attempt=True, worker="test-w1")
    if fail is not None:
        store.transition(
            job.id,
            JobState.FAILED,
            batch=job.batch,
            error_code=fail,
            error_message=f"the test said {fail}",
        )
        return
    settings = settings or Settings()
    assert job.output.uri is not None
    with Image.open(BytesIO(read_uri(job.input, settings))) as image:
        buffer = BytesIO()
        ImageOps.invert(image.convert("RGB")).save(buffer, "WEBP")
    location, prefix = open_location(job.output.uri, settings)
    uri = location.put(
        f"{prefix}{job.output.key}.{job.output.extension}", buffer.getvalue(), "image/webp"
    )
    store.transition(job.id, JobState.SUCCEEDED, output=uri)
