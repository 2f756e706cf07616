"""How much work waits and is in flight per queue, read straight from kombu's Redis layout.

- depth: the sum of LLEN over a queue's priority sub-lists (`priority_lists`);
- in flight: entries of kombu's global unacked hash, whose routing key is the queue.

`darkroom queues`, the autoscaler's observer and the metrics collector all read these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from transport.messages import UNACKED_HASH, decode_unacked, priority_lists

if TYPE_CHECKING:
    from redis import Redis


def queue_depths(redis: Redis, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting per queue, over every priority sub-list (one pipelined LLEN each).

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        for key in priority_lists(queue):
            pipe.llen(key)
    lengths = pipe.execute()
    per = len(priority_lists("q"))
    return {q: int(sum(lengths[i * per : (i + 1) * per])) for i, q in enumerate(queues)}


def unacked_jobs(redis: Redis) -> dict[str, list[str]]:
    """Job ids delivered to a worker and not yet acknowledged, per routing key (queue).

    Raises:
        redis.exceptions.ConnectionError: Redis is unreachable.
    """
    held: dict[str, list[str]] = {}
    for _tag, raw in redis.hscan_iter(UNACKED_HASH, count=1000):
        job_id, routing_key = decode_unacked(raw)
        if job_id and routing_key:
            held.setdefault(routing_key, []).append(job_id)
    return held
