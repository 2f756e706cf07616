"""Reads what the controller needs from Redis: depth, jobs in flight, age, service time.

- depth: the sum of LLEN over a queue's priority sub-lists (`transport.messages.priority_lists`);
- in flight: entries of kombu's unacked hash whose routing key is the queue, averaged
  over the polls since the last sample (`poll()` is cheap: one HVALS);
- oldest age: now minus `queued_at` of the oldest message at the tail of each sub-list;
- service time: `running_at -> succeeded_at` of jobs this observer saw in flight and
  that have since succeeded, averaged over the last `window` of them per queue;
- workers: live heartbeats (`Keyspace.worker`) that list the queue.

`workers.metrics` reads the same functions at scrape time.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from transport.depths import queue_depths, unacked_jobs
from transport.keyspace import Keyspace
from transport.messages import message_id, priority_lists
from workers.autoscale.controller import QueueSample

if TYPE_CHECKING:
    from redis import Redis

MAX_TRACKED = 10_000


def in_flight_jobs(redis: Redis, queues: Sequence[str]) -> dict[str, list[str]]:
    """Job ids delivered to a worker and not yet acknowledged, for each of `queues`."""
    held = unacked_jobs(redis)
    return {q: held.get(q, []) for q in queues}


def oldest_ages(
    redis: Redis, keys: Keyspace, queues: Sequence[str], now: float
) -> dict[str, float]:
    """Seconds the oldest waiting job of each non-empty queue has been queued."""
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        for key in priority_lists(queue):
            pipe.lindex(key, -1)  # kombu pushes left and pops right: the tail is oldest
    tails = pipe.execute()
    per = len(priority_lists(queues[0])) if queues else 0
    owners: list[tuple[str, str]] = []
    for i, queue in enumerate(queues):
        for raw in tails[i * per : (i + 1) * per]:
            job_id = message_id(raw)
            if job_id:
                owners.append((queue, job_id))
    pipe = redis.pipeline(transaction=False)
    for _, job_id in owners:
        pipe.hget(keys.job(job_id), "queued_at")
    ages: dict[str, float] = {}
    for (queue, _), queued_at in zip(owners, pipe.execute(), strict=True):
        if queued_at:
            ages[queue] = max(ages.get(queue, 0.0), now - float(queued_at))
    return ages


def workers_per_queue(redis: Redis, keys: Keyspace, queues: Sequence[str]) -> dict[str, int]:
    """Live workers (fresh heartbeats) consuming each queue."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in redis.smembers(keys.workers())]
    counts = dict.fromkeys(queues, 0)
    if not names:
        return counts
    for raw in redis.mget([keys.worker(n) for n in names]):
        if not raw:
            continue
        for queue in json.loads(raw).get("queues") or []:
            if queue in counts:
                counts[queue] += 1
    return counts


@dataclass
class Observer:
    """Samples every queue; remembers jobs seen in flight to measure service times."""

    redis: Redis
    keys: Keyspace
    window: int = 50
    _tracked: dict[str, str] = field(default_factory=dict)
    _service: dict[str, deque[float]] = field(default_factory=dict)
    _polled: dict[str, list[int]] = field(default_factory=dict)

    def poll(self, queues: Sequence[str]) -> None:
        """Count jobs in flight now; `sample` reports the mean of the counts since."""
        held = in_flight_jobs(self.redis, queues)
        for queue, job_ids in held.items():
            self._polled.setdefault(queue, []).append(len(job_ids))
        self._track(held)

    def sample(self, queues: Sequence[str], now: float | None = None) -> dict[str, QueueSample]:
        now = time.time() if now is None else now
        depths = queue_depths(self.redis, queues)
        held = in_flight_jobs(self.redis, queues)
        ages = oldest_ages(self.redis, self.keys, queues, now)
        workers = workers_per_queue(self.redis, self.keys, queues)
        self._measure_finished()
        self._track(held)
        counts = {q: [*self._polled.pop(q, []), len(held[q])] for q in queues}
        return {
            q: QueueSample(
                queue=q,
                depth=depths[q],
                in_flight=sum(counts[q]) / len(counts[q]),
                service_time_s=self.service_time(q),
                oldest_age_s=ages.get(q),
                workers=workers[q],
            )
            for q in queues
        }

    def service_time(self, queue: str) -> float | None:
        """Mean seconds per job over the last `window` measured, or None yet."""
        times = self._service.get(queue)
        return sum(times) / len(times) if times else None

    def _track(self, held: dict[str, list[str]]) -> None:
        for queue, job_ids in held.items():
            for job_id in job_ids:
                if len(self._tracked) < MAX_TRACKED:
                    self._tracked[job_id] = queue

    def _measure_finished(self) -> None:
        if not self._tracked:
            return
        ids = list(self._tracked)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "state", "running_at", "succeeded_at")
        for job_id, (state, running_at, succeeded_at) in zip(ids, pipe.execute(), strict=True):
            if state in (b"queued", b"running", b"retrying"):
                continue
            queue = self._tracked.pop(job_id)
            if state == b"succeeded" and running_at and succeeded_at:
                spent = float(succeeded_at) - float(running_at)
                self._service.setdefault(queue, deque(maxlen=self.window)).append(spent)
