"""Direct queues on a real Redis: a job is forwarded at most once and only into room; a
forwarded message is never taken for lost; a dead worker's direct queue goes back to the
front of its shared queue, oldest first."""

from __future__ import annotations

import json

import redis

from jobs import Job, Recipe, Step
from jobs.states import JobState
from transport import direct
from transport.keyspace import Keyspace
from transport.lost import lost_queued
from transport.messages import priority_lists
from transport.store import JobStore, Submission
from workers.heartbeat import sweep

QUEUE = "edge.final"
KEYS = Keyspace()


def _jobs(n: int) -> list[Job]:
    recipe = Recipe(steps=[Step(op="ip2p_edit", params={"prompt": "p", "model": "m-a@stable"})])
    return [Job(id=f"job{i}", input=f"file:///in/{i}.jpg", recipe=recipe) for i in range(n)]


def _ids(client: redis.Redis, queue: str) -> list[str]:
    """Message ids of `queue` in the order workers take them (BRPOP: right end first)."""
    return [
        json.loads(raw)["headers"]["id"]
        for key in priority_lists(queue)
        for raw in reversed(client.lrange(key, 0, -1))
    ]


def _take(client: redis.Redis, queue: str) -> None:
    """Empty `queue`, as workers that took (and acked) every message would."""
    client.delete(*priority_lists(queue))


def _forward(client: redis.Redis, job: Job, target: str, room: int = 2) -> bool:
    payload = job.model_dump(mode="json", by_alias=True)
    return direct.forward(client, KEYS, payload, queue=QUEUE, priority=job.priority,
                          target=target, source="w-here", room=room)  # fmt: skip


def _beat(client: redis.Redis, hostname: str) -> None:
    client.set(KEYS.worker(hostname), json.dumps({"hostname": hostname}), px=60_000)
    client.sadd(KEYS.workers(), hostname)


def test_a_job_is_forwarded_once_and_only_while_queued(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    jobs = _jobs(2)
    store.enqueue(Submission(j, QUEUE) for j in jobs)
    _take(redis_client, QUEUE)
    assert _forward(redis_client, jobs[0], "w-b")
    assert not _forward(redis_client, jobs[0], "w-c"), "a forwarded job forwards again"
    record = store.get(jobs[0].id)
    assert record is not None and record.forwarded_to == "w-b"
    assert _ids(redis_client, direct.direct_queue(QUEUE, "w-b")) == [jobs[0].id]
    assert _ids(redis_client, direct.direct_queue(QUEUE, "w-c")) == []
    store.transition(jobs[1].id, JobState.RUNNING, attempt=True)
    assert not _forward(redis_client, jobs[1], "w-b"), "a running job was forwarded"


def test_forwarding_stops_when_the_target_has_no_room(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    jobs = _jobs(3)
    store.enqueue(Submission(j, QUEUE) for j in jobs)
    _take(redis_client, QUEUE)
    assert [_forward(redis_client, j, "w-b", room=2) for j in jobs] == [True, True, False]
    assert direct.waiting(redis_client, QUEUE, "w-b") == 2
    assert store.get(jobs[2].id).forwarded_to is None  # type: ignore[union-attr]


def test_a_forwarded_message_is_not_lost(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    jobs = _jobs(2)
    store.enqueue(Submission(j, QUEUE) for j in jobs)
    _take(redis_client, QUEUE)  # both taken; only job0 was forwarded, job1's message is gone
    assert _forward(redis_client, jobs[0], "w-b")
    assert set(lost_queued(redis_client, KEYS, held=set())) == {jobs[1].id}


def test_the_sweep_returns_a_dead_workers_direct_queue_to_the_front(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    jobs = _jobs(4)
    store.enqueue(Submission(j, QUEUE) for j in jobs[:3])
    _take(redis_client, QUEUE)
    _beat(redis_client, "w-live")
    for job in jobs[:2]:
        assert _forward(redis_client, job, "w-dead")
    assert _forward(redis_client, jobs[2], "w-live")
    store.enqueue([Submission(jobs[3], QUEUE)])  # waiting in the shared queue meanwhile
    restored = sweep(redis_client, KEYS)
    assert sorted(restored) == [jobs[0].id, jobs[1].id]
    # the dead worker's jobs run next, in the order they were forwarded
    assert _ids(redis_client, QUEUE) == [jobs[0].id, jobs[1].id, jobs[3].id]
    assert _ids(redis_client, direct.direct_queue(QUEUE, "w-live")) == [jobs[2].id]
    assert direct.direct_queues(redis_client, KEYS) == [direct.direct_queue(QUEUE, "w-live")]
    assert sweep(redis_client, KEYS) == []
