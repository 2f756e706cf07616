"""What `darkroom queues` shows: backlog, in-flight jobs and live workers per queue.

Depth is the sum of LLEN over a queue's priority sub-lists; in-flight messages are
the ones kombu parked in its global unacked hash (routing key = queue); a worker is
live while its heartbeat key exists, and hostnames whose key expired are pruned
from the set of workers ever seen.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from jobs.tiers import all_queues
from transport.depths import queue_depths, unacked_jobs
from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings


@dataclass(frozen=True)
class QueueStats:
    """One `<tier>.<lane>` queue right now."""

    queue: str
    depth: int
    in_flight: int
    workers: int
    busy: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_workers(settings: Settings, redis: Redis) -> list[dict[str, Any]]:
    """Heartbeats of the workers alive now, by hostname; dead hostnames are pruned."""
    keys = Keyspace(settings.key_prefix)
    hostnames = sorted(_text(h) for h in redis.smembers(keys.workers()))
    if not hostnames:
        return []
    beats = redis.mget([keys.worker(h) for h in hostnames])
    alive, dead = [], []
    for hostname, raw in zip(hostnames, beats, strict=True):
        beat = _decode(raw)
        if beat is None:
            dead.append(hostname)
        else:
            alive.append({**beat, "hostname": beat.get("hostname", hostname)})
    if dead:
        redis.srem(keys.workers(), *dead)
    return alive


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        beat = json.loads(raw)
    except ValueError:
        return None
    return beat if isinstance(beat, dict) else None


def in_flight(redis: Redis) -> Counter[str]:
    """Messages delivered but not yet acknowledged, per queue."""
    return Counter({queue: len(ids) for queue, ids in unacked_jobs(redis).items()})


def busy_by_queue(settings: Settings, redis: Redis, workers: list[dict[str, Any]]) -> Counter[str]:
    """Workers rendering now, counted on the queue their current job came from."""
    keys = Keyspace(settings.key_prefix)
    jobs = [str(w["job"]) for w in workers if w.get("job")]
    if not jobs:
        return Counter()
    pipe = redis.pipeline(transaction=False)
    for job_id in jobs:
        pipe.hget(keys.job(job_id), "queue")
    return Counter(_text(q) for q in pipe.execute() if q)


def queue_stats(settings: Settings, redis: Redis) -> list[QueueStats]:
    """Every configured queue, plus any other a worker or in-flight message names."""
    workers = live_workers(settings, redis)
    flying = in_flight(redis)
    busy = busy_by_queue(settings, redis, workers)
    queues = all_queues(settings.tiers())
    extra = {q for w in workers for q in w.get("queues", []) if isinstance(q, str)}
    queues += sorted((extra | set(flying) | set(busy)) - set(queues))
    depth = queue_depths(redis, queues)
    return [
        QueueStats(
            queue=q,
            depth=depth[q],
            in_flight=flying[q],
            workers=sum(q in w.get("queues", []) for w in workers),
            busy=busy[q],
        )
        for q in queues
    ]
