"""The autoscaler's latest estimate of how long a new job waits on each queue.

The autoscaler (`workers.autoscale`) already measures depth, live workers and service
time per queue; each tick it publishes its wait estimate and the queue's target here.
The producer reads them at submit time to decide whether a job spills to the hosted
tier (`producer.overflow`). One Redis hash, one field per queue, JSON values.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True)
class WaitEstimate:
    """A queue's estimated wait for a job queued now, against its target (seconds)."""

    queue: str
    wait_s: float
    target_s: float
    at: float
    """Epoch seconds when the autoscaler measured it."""
    depth: int = 0
    workers: int = 0

    @property
    def over_target(self) -> bool:
        return self.wait_s > self.target_s

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.at


def publish(redis: Redis, keys: Keyspace, estimates: list[WaitEstimate]) -> None:
    """Write each estimate over the queue's previous one."""
    if estimates:
        redis.hset(
            keys.wait_estimates(), mapping={e.queue: json.dumps(asdict(e)) for e in estimates}
        )


def read(redis: Redis, keys: Keyspace, queue: str) -> WaitEstimate | None:
    """The latest estimate for `queue`, or None if none was published (or it is unreadable)."""
    raw = redis.hget(keys.wait_estimates(), queue)
    if raw is None:
        return None
    try:
        return WaitEstimate(**json.loads(raw))
    except (ValueError, TypeError):
        return None
