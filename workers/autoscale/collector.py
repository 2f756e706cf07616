"""A Prometheus collector that reads queue state from Redis at scrape time.

Per queue `<tier>.<lane>`: jobs waiting (over every priority sub-list), jobs in flight,
the age of the oldest waiting job, and live workers. Nothing is cached: a scrape sees
Redis as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from transport.depths import queue_depths
from transport.keyspace import Keyspace
from workers.autoscale.observer import in_flight_jobs, oldest_ages, workers_per_queue

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    """Depth, in flight, oldest-job age and live workers per queue."""

    def __init__(self, redis: Redis, keys: Keyspace, queues: Sequence[str]) -> None:
        self.redis = redis
        self.keys = keys
        self.queues = list(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["queue", "tier", "lane"]
        depth = GaugeMetricFamily(
            "darkroom_queue_depth", "jobs waiting in the queue", labels=labels
        )
        held = GaugeMetricFamily(
            "darkroom_queue_in_flight", "jobs delivered and not yet acknowledged", labels=labels
        )
        age = GaugeMetricFamily(
            "darkroom_queue_oldest_age_seconds", "how long the oldest waiting job has waited",
            labels=labels,
        )  # fmt: skip
        workers = GaugeMetricFamily(
            "darkroom_queue_workers", "live workers consuming the queue", labels=labels
        )
        up = GaugeMetricFamily("darkroom_queue_scrape_ok", "1 if Redis answered this scrape")
        try:
            now = time.time()
            depths = queue_depths(self.redis, self.queues)
            flights = in_flight_jobs(self.redis, self.queues)
            ages = oldest_ages(self.redis, self.keys, self.queues, now)
            live = workers_per_queue(self.redis, self.keys, self.queues)
        except Exception:  # a scrape must answer even when Redis does not
            log.warning("queue metrics: Redis did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        for queue in self.queues:
            values = [queue, *queue.split(".", 1)]
            depth.add_metric(values, depths[queue])
            held.add_metric(values, len(flights[queue]))
            age.add_metric(values, ages.get(queue, 0.0))
            workers.add_metric(values, live[queue])
        up.add_metric([], 1)
        yield from (depth, held, age, workers, up)
