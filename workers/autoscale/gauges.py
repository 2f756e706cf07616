"""Prometheus gauges of the autoscaler's view: replicas wanted and running, per pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

if TYPE_CHECKING:
    from workers.autoscale.controller import Decision, QueueSample

LABELS = ("queue", "tier", "lane")


class ReplicaGauges:
    """Desired and current replicas plus the inputs behind them, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=self.registry)

        self.desired = gauge("darkroom_autoscale_desired_replicas", "replicas the controller wants")
        self.current = gauge("darkroom_autoscale_current_replicas", "replicas the platform runs")
        self.wanted = gauge(
            "darkroom_autoscale_wanted_replicas", "replicas the load asks for, before bounds"
        )
        self.depth = gauge("darkroom_autoscale_queue_depth", "jobs waiting, as last observed")
        self.in_flight = gauge("darkroom_autoscale_in_flight", "jobs running, as last observed")
        self.service = gauge(
            "darkroom_autoscale_service_seconds", "measured seconds per job (0 until measured)"
        )

    def record(self, decision: Decision, sample: QueueSample) -> None:
        tier, lane = decision.queue.split(".", 1)
        labels = (decision.queue, tier, lane)
        self.desired.labels(*labels).set(decision.desired)
        self.current.labels(*labels).set(decision.current)
        self.wanted.labels(*labels).set(decision.wanted)
        self.depth.labels(*labels).set(sample.depth)
        self.in_flight.labels(*labels).set(sample.in_flight)
        self.service.labels(*labels).set(sample.service_time_s or 0.0)
