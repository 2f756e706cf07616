"""One job, one running attempt: the claim, the lease, the fence, against a real Redis.

The worker-process versions of these faults (a `-c 2` worker given two messages for
one job, a pool child killed, two workers with one name) are in test_queue_faults.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from jobs import Job, Lane, OutputSpec, Recipe, Step
from jobs.settings import Settings
from jobs.states import ErrorCode, JobState
from jobs.tiers import tier_named
from transport.attempts import Attempt, ClaimRefused, Ownership
from transport.embedded import EmbeddedRedis
from transport.keyspace import Keyspace
from transport.messages import priority_lists
from transport.redis_config import EvictingRedis, check_redis, eviction_problem
from transport.store import AttemptSuperseded, CancelPending, JobStore, Submission
from workers import tasks
from workers.app import create_app
from workers.heartbeat import sweep
from workers.runtime import Runtime

pytestmark = pytest.mark.integration
QUEUE = "cpu.final"


@pytest.fixture
def rt(redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path) -> Runtime:
    settings = Settings(
        redis_url=redis_server.url,
        output=str(tmp_path / "out"),
        heartbeat_interval_s=0.2,
        heartbeat_ttl_s=0.6,
    )
    return Runtime(settings, tier_named("cpu"), redis_client, JobStore(redis_client), Keyspace())


@pytest.fixture
def job(rt: Runtime, tmp_path: Path) -> Job:
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 48), (120, 80, 40)).save(path)
    queued = Job(
        input=path.as_uri(),
        recipe=Recipe(steps=[Step(op="auto_levels")]),
        mode=Lane.FINAL,
        output=OutputSpec(format="png"),
    )
    rt.store.enqueue([Submission(queued, QUEUE)])
    rt.redis.delete(*priority_lists(QUEUE))  # as if a worker had taken the message
    return queued


def claimed(rt: Runtime, job: Job, worker: str = "w1@host", incarnation: str = "i1") -> Attempt:
    attempt = tasks.claim(rt, job, worker, incarnation)
    assert isinstance(attempt, Attempt)
    return attempt


def test_a_second_delivery_never_starts_a_second_attempt_while_the_first_lives(
    rt: Runtime, job: Job
) -> None:
    first = claimed(rt, job)
    # the same worker and incarnation (a -c 2 worker's second slot) is refused too
    assert tasks.claim(rt, job, "w1@host", "i1") is None
    assert tasks.claim(rt, job, "w2@host", "i2") is None
    record = rt.store.get(job.id)
    assert record is not None and record.attempts == 1 and record.attempt == first.id


def test_an_expired_lease_hands_the_job_over_and_fences_every_write_of_the_old_attempt(
    rt: Runtime, job: Job
) -> None:
    zombie = claimed(rt, job, "w1@host")
    assert rt.attempts.renew(zombie) is Ownership.OWNED
    time.sleep(rt.settings.heartbeat_ttl_s + 0.2)  # w1 is cut off: no renewal
    successor = claimed(rt, job, "w2@host", "i2")
    # the zombie can neither move the state, nor report progress, nor keep its lease
    with pytest.raises(AttemptSuperseded):
        rt.store.transition(job.id, JobState.SUCCEEDED, fence=zombie.id, output="file:///x")
    with pytest.raises(AttemptSuperseded):
        rt.store.transition(job.id, JobState.FAILED, fence=zombie.id, error_code="internal")
    assert not rt.attempts.progress(zombie, 0.9)
    assert rt.attempts.renew(zombie) is Ownership.LOST
    # the successor can
    assert rt.attempts.progress(successor, 0.5)
    rt.store.transition(job.id, JobState.SUCCEEDED, fence=successor.id, output="file:///y")
    record = rt.store.get(job.id)
    assert record is not None and record.state is JobState.SUCCEEDED
    assert (record.output, record.worker, record.attempts) == ("file:///y", "w2@host", 2)
    assert not rt.attempts.lease_alive(job.id)  # a finished job holds no lease


def test_the_sweep_requeues_a_running_job_only_once_its_lease_has_expired(
    rt: Runtime, job: Job
) -> None:
    attempt = claimed(rt, job, "dup@host", "first")
    # a second live worker beating under the same name (another incarnation) and no beat
    # at all for the holder: neither makes the sweep take a job whose attempt renews
    rt.redis.set(rt.keys.worker("dup@host"), json.dumps({"incarnation": "second"}), px=5000)
    rt.redis.sadd(rt.keys.workers(), "dup@host")
    for _ in range(4):
        assert rt.attempts.renew(attempt) is Ownership.OWNED
        assert sweep(rt.redis, rt.keys) == []
        time.sleep(rt.settings.heartbeat_ttl_s / 3)
    time.sleep(rt.settings.heartbeat_ttl_s + 0.2)
    assert sweep(rt.redis, rt.keys) == [job.id]
    record = rt.store.get(job.id)
    assert record is not None and record.state is JobState.RETRYING
    assert sum(rt.redis.llen(key) for key in priority_lists(QUEUE)) == 1
    assert rt.attempts.renew(attempt) is Ownership.LOST


def test_a_cancel_that_lands_as_the_output_is_published_wins(rt: Runtime, job: Job) -> None:
    attempt = claimed(rt, job)
    rt.store.cancel(job.id)
    assert rt.attempts.renew(attempt) is Ownership.CANCEL_REQUESTED
    with pytest.raises(CancelPending):
        rt.store.transition(
            job.id, JobState.SUCCEEDED, fence=attempt.id, unless_canceled=True, output="x"
        )


def test_a_message_whose_job_record_is_gone_is_dead_lettered_not_dropped(
    rt: Runtime, job: Job
) -> None:
    rt.redis.delete(rt.keys.job(job.id))  # evicted
    assert tasks.claim(rt, job, "w1@host") is None
    record = rt.store.get(job.id)
    assert record is not None and record.state is JobState.FAILED
    assert record.error_code is ErrorCode.INTERNAL
    assert "record was gone from Redis" in (record.error_message or "")
    (entry,) = rt.store.dead_letters()
    assert entry["id"] == job.id and entry["job"]["input"] == job.input


def test_memory_error_is_out_of_memory_and_spills_to_the_next_tier(
    rt: Runtime, job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(*_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(tasks, "render", exhausted)
    app = create_app(rt.settings)
    tasks.run(rt, app, job.model_dump(mode="json", by_alias=True), job.id, "w1@host")
    record = rt.store.get(job.id)
    assert record is not None and record.state is JobState.RETRYING, record
    assert record.error_code is ErrorCode.OUT_OF_MEMORY
    assert "retrying on edge.final" in (record.error_message or "")


@pytest.fixture
def evicting(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    try:
        yield redis_client
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "volatile-ttl"])
def test_a_redis_that_may_evict_keys_is_refused_with_the_setting_to_use(
    evicting: redis.Redis, policy: str
) -> None:
    assert eviction_problem(evicting) is None
    evicting.config_set("maxmemory-policy", policy)
    with pytest.raises(EvictingRedis, match=f"maxmemory-policy is {policy}.*noeviction"):
        check_redis(evicting, "worker w1")


def test_refused_claims_say_why(rt: Runtime, job: Job) -> None:
    first = rt.attempts.claim(job.id, worker="a")
    assert isinstance(first, Attempt)
    assert rt.attempts.claim(job.id, worker="b") == ClaimRefused("held")
    rt.store.transition(job.id, JobState.SUCCEEDED, fence=first.id)
    assert rt.attempts.claim(job.id, worker="b") == ClaimRefused("succeeded")
    assert rt.attempts.claim("nope", worker="b") == ClaimRefused("missing")


def test_the_api_refuses_to_start_on_a_redis_that_may_evict_jobs(
    evicting: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from producer.api.app import create_app as create_api

    evicting.config_set("maxmemory-policy", "volatile-lru")
    api = create_api(Settings(redis_url=redis_server.url, output=str(tmp_path / "out")))
    with pytest.raises(EvictingRedis, match="darkroom api refuses to start"), TestClient(api):
        pass
