"""Queued jobs whose message is nowhere: lost between kombu's BRPOP and its unacked write.

kombu's Redis transport pops a message (BRPOP) and records it as unacknowledged in a
second round trip. If Redis goes away between the two, the message exists only in the
consumer's memory, kombu drops it on the connection error, and the job stays `queued`
with no message: nothing would ever run it. The registry of started jobs cannot see it
(the job never started), so after Redis comes back the sweeping worker looks for such
jobs here and sends them again from their stored payload (`JobStore.requeue_lost`).

A job counts as lost only if its id is in no queue list (its own queue's, or a direct
queue it may have been forwarded to: `transport.direct`), not in kombu's unacked hash,
not in an API intake set, and held by no live worker (`holding` in the heartbeats). The
caller checks twice, a sweep apart, so a message in flight between BRPOP and the unacked
write at the first look is not taken for lost. The SCAN over job hashes is O(jobs): it
runs only after Redis was unreachable, and once when a sweeping worker starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from transport.direct import direct_queues
from transport.keyspace import Keyspace
from transport.messages import UNACKED_HASH, decode_unacked, message_id, priority_lists

if TYPE_CHECKING:
    from redis import Redis

SCAN_COUNT = 1000


def queued_jobs(redis: Redis, keys: Keyspace) -> dict[str, str]:
    """job id -> queue of every job recorded `queued` (one SCAN over the job hashes).

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    prefix = keys.job("")
    found: dict[str, str] = {}
    batch: list[str] = []
    for raw in redis.scan_iter(match=keys.job("*"), count=SCAN_COUNT):
        name = raw.decode() if isinstance(raw, bytes) else raw
        if ":" not in name[len(prefix) :]:
            batch.append(name)
        if len(batch) >= SCAN_COUNT:
            found.update(_queued(redis, batch, prefix))
            batch = []
    found.update(_queued(redis, batch, prefix))
    return found


def _queued(redis: Redis, names: list[str], prefix: str) -> dict[str, str]:
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, "state", "queue")
    found = {}
    for name, (state, queue) in zip(names, pipe.execute(), strict=True):
        if state == b"queued" and queue:
            found[name[len(prefix) :]] = queue.decode()
    return found


def messages_present(redis: Redis, keys: Keyspace, queues: Iterable[str]) -> set[str]:
    """Ids of jobs that have a message somewhere: a list of one of `queues` or of a
    direct queue, the unacked hash or an API intake set.

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    present: set[str] = set()
    for queue in set(queues) | set(direct_queues(redis, keys)):
        for key in priority_lists(queue):
            present.update(filter(None, map(message_id, redis.lrange(key, 0, -1))))
    for raw in redis.hvals(UNACKED_HASH):
        job_id, _queue = decode_unacked(raw)
        if job_id:
            present.add(job_id)
    for tenant in redis.smembers(keys.intake_tenants()):
        name = tenant.decode() if isinstance(tenant, bytes) else tenant
        members: Any = redis.zrange(keys.intake(name), 0, -1)
        present.update(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    return present


def lost_queued(redis: Redis, keys: Keyspace, held: set[str]) -> dict[str, str]:
    """job id -> queue of the queued jobs with no message anywhere and held by no live
    worker (`held`: the union of the live heartbeats' `holding`).

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    queued = queued_jobs(redis, keys)
    if not queued:
        return {}
    present = messages_present(redis, keys, queued.values()) | held
    return {job_id: queue for job_id, queue in queued.items() if job_id not in present}
