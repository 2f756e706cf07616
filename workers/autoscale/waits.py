"""How long a job queued now waits on each queue, published for the producer's overflow.

The estimate is the controller's backlog term turned around: the jobs queued ahead,
times the measured service time (the pool's prior until one is measured), over the
slots the live replicas offer:

    wait = depth * service_time / (max(1, workers) * concurrency)

It leaves out the rest of the jobs in flight (at most one service time) and a cold
start; a pool at zero counts as the one replica its first job wakes. The target it is
held against is the pool's own: `drain_time_s` for a final lane, `target_wait_s` for a
preview lane.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transport.estimates import WaitEstimate, publish
from transport.keyspace import Keyspace
from workers.autoscale.controller import QueueSample
from workers.autoscale.pools import Pool

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)


def estimated_wait_s(pool: Pool, sample: QueueSample) -> float:
    """Seconds a job queued now waits before a slot takes it (>= 0)."""
    service = sample.service_time_s or pool.service_time_s
    slots = max(1, sample.workers) * pool.concurrency
    return sample.depth * service / slots


def estimate(pool: Pool, sample: QueueSample, now: float) -> WaitEstimate:
    return WaitEstimate(
        queue=pool.queue,
        wait_s=estimated_wait_s(pool, sample),
        target_s=pool.target_s,
        at=now,
        depth=sample.depth,
        workers=sample.workers,
    )


@dataclass
class WaitBoard:
    """Publishes each tick's estimates to Redis (`transport.estimates`)."""

    redis: Redis
    keys: Keyspace

    def __call__(self, observed: Sequence[tuple[Pool, QueueSample]], now: float) -> None:
        try:
            publish(self.redis, self.keys, [estimate(p, s, now) for p, s in observed])
        except Exception:  # scaling goes on without the estimates; they just age out
            log.warning("could not publish wait estimates", exc_info=True)
