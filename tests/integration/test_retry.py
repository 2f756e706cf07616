"""Retry policy: out of memory spills to the next larger tier; transient store errors retry."""

from __future__ import annotations

import json
import time

import pytest
import redis

from jobs import Job, Lane, Recipe, Step
from jobs.errors import OutOfMemory, StorageUnavailable
from jobs.settings import Settings
from jobs.states import JobState
from jobs.tiers import tier_named
from transport.embedded import EmbeddedRedis
from transport.keyspace import Keyspace
from transport.messages import priority_lists
from transport.store import JobStore, Submission
from workers.app import create_app
from workers.runtime import Runtime
from workers.tasks import _retry, claim

pytestmark = pytest.mark.integration


def runtime(settings: Settings, tier: str, client: redis.Redis) -> Runtime:
    return Runtime(settings, tier_named(tier), client, JobStore(client), Keyspace())


def queued_jobs(client: redis.Redis, queue: str) -> list[dict[str, object]]:
    messages = [json.loads(m) for key in priority_lists(queue) for m in client.lrange(key, 0, -1)]
    return [m["headers"] for m in messages]


@pytest.fixture
def setup(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> tuple[Settings, Job]:
    settings = Settings(redis_url=redis_server.url, max_attempts=3)
    job = Job(
        input="file:///x.png",
        recipe=Recipe(steps=[Step(op="auto_levels")]),
        mode=Lane.FINAL,
        priority=3,
    )
    JobStore(redis_client).enqueue([Submission(job, "a10.final")])
    redis_client.delete(*priority_lists("a10.final"))  # as if a worker had taken it
    return settings, job


def test_out_of_memory_spills_to_the_next_larger_tier(
    setup: tuple[Settings, Job], redis_client: redis.Redis
) -> None:
    settings, job = setup
    app = create_app(settings)
    rt = runtime(settings, "a10", redis_client)
    assert claim(rt, job, "w@a10")
    assert _retry(rt, app, job, OutOfMemory("CUDA out of memory at 1024x1024"))
    record = rt.store.get(job.id)
    assert record is not None and record.state is JobState.RETRYING
    assert "retrying on a100.final" in (record.error_message or "")
    (headers,) = queued_jobs(redis_client, "a100.final")
    assert headers["id"] == job.id and headers["eta"] is not None  # sent with a backoff


def test_the_largest_tier_has_nowhere_to_spill(
    setup: tuple[Settings, Job], redis_client: redis.Redis
) -> None:
    settings, job = setup
    rt = runtime(settings, "a100", redis_client)
    assert claim(rt, job, "w@a100")
    assert not _retry(rt, create_app(settings), job, OutOfMemory("still too big"))


def test_a_storage_outage_retries_without_spending_attempts_until_its_budget_runs_out(
    setup: tuple[Settings, Job], redis_client: redis.Redis
) -> None:
    settings, job = setup
    app = create_app(settings)
    rt = runtime(settings, "a10", redis_client)
    for attempt in range(1, settings.max_attempts + 3):  # more re-sends than crash attempts
        assert claim(rt, job, "w@a10")
        assert _retry(rt, app, job, StorageUnavailable("s3 endpoint unreachable"))
        assert len(queued_jobs(redis_client, "a10.final")) == attempt
    record = rt.store.get(job.id)
    assert record is not None and record.retries == settings.max_attempts + 2
    # the outage began longer ago than the budget: the next failure is final
    spent = time.time() - settings.retry_budget_s - 1
    redis_client.hset(rt.keys.job(job.id), "first_retry_at", repr(spent))
    assert claim(rt, job, "w@a10")
    assert not _retry(rt, app, job, StorageUnavailable("s3 endpoint unreachable"))
