"""A queued job whose message vanished (kombu pops a message, then records it unacked in a
second round trip; a Redis restart between the two loses it) is found and sent again by
the sweeping worker, and nothing that still has a message is sent twice."""

from __future__ import annotations

import json

import redis

from jobs import Job, Recipe, Step
from jobs.states import JobState
from transport.keyspace import Keyspace
from transport.messages import priority_lists
from transport.store import JobStore, Submission
from workers.heartbeat import Heartbeat


def _jobs(n: int) -> list[Job]:
    recipe = Recipe(steps=[Step(op="denoise")])
    return [Job(id=f"job{i}", input=f"file:///in/{i}.jpg", recipe=recipe) for i in range(n)]


def _message_ids(client: redis.Redis, queue: str) -> list[str]:
    return [
        json.loads(raw)["headers"]["id"]
        for key in priority_lists(queue)
        for raw in client.lrange(key, 0, -1)
    ]


def _drop_message(client: redis.Redis, queue: str, job_id: str) -> None:
    for key in priority_lists(queue):
        for raw in client.lrange(key, 0, -1):
            if json.loads(raw)["headers"]["id"] == job_id:
                client.lrem(key, 1, raw)


def test_a_queued_job_whose_message_was_lost_is_sent_again_once(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.enqueue(Submission(j, "cpu.final") for j in _jobs(4))
    # job0's message is lost as in a restart between BRPOP and the unacked write;
    # job1's message is in a live worker's hands (its heartbeat says it holds it).
    lost, held = "job0", "job1"
    _drop_message(redis_client, "cpu.final", lost)
    _drop_message(redis_client, "cpu.final", held)
    keys = Keyspace()
    worker = {"hostname": "w1", "holding": [held]}
    redis_client.set(keys.worker("w1"), json.dumps(worker), px=60_000)
    redis_client.sadd(keys.workers(), "w1")
    beat = Heartbeat(redis=redis_client, keys=keys, hostname="sweeper", info={})

    beat._find_lost()  # first look: a suspect only (it may be between BRPOP and unacked)
    assert lost not in _message_ids(redis_client, "cpu.final")
    beat._find_lost()  # second look: confirmed, sent again from its payload
    beat._find_lost()
    ids = _message_ids(redis_client, "cpu.final")
    assert sorted(ids) == sorted({"job0", "job1", "job2", "job3"} - {held})
    assert ids.count(lost) == 1
    record = store.get(lost)
    assert record is not None and record.state is JobState.QUEUED


def test_jobs_with_a_message_or_past_queued_are_left_alone(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.enqueue(Submission(j, "cpu.final") for j in _jobs(3))
    before = sorted(_message_ids(redis_client, "cpu.final"))
    beat = Heartbeat(redis=redis_client, keys=Keyspace(), hostname="sweeper", info={})
    for _ in range(3):
        beat._find_lost()
    assert sorted(_message_ids(redis_client, "cpu.final")) == before
    assert not store.requeue_lost("no-such-job")
