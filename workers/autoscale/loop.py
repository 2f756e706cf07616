"""One autoscaler: observe every pool's queue, decide, apply through a driver, export."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.autoscale.controller import Controller, Decision, QueueSample
from workers.autoscale.drivers import Driver, ScaleFailed
from workers.autoscale.gauges import ReplicaGauges
from workers.autoscale.pools import Pool, PoolConfig

log = logging.getLogger(__name__)

Sampler = Callable[[list[str], float], dict[str, QueueSample]]
Poller = Callable[[list[str]], None]
WaitPublisher = Callable[[list[tuple[Pool, QueueSample]], float], None]


@dataclass
class Autoscaler:
    """Ties an observer (`sampler`), the pure controller and a driver together."""

    config: PoolConfig
    sampler: Sampler
    driver: Driver
    controller: Controller = field(default_factory=Controller)
    gauges: ReplicaGauges | None = None
    clock: Callable[[], float] = time.time
    poller: Poller | None = None
    """Called every `poll_s` between ticks, so in-flight counts are averaged."""
    poll_s: float = 1.0
    publish_waits: WaitPublisher | None = None
    """Called each tick with every pool's sample (`workers.autoscale.waits.WaitBoard`)."""

    def step(self) -> list[Decision]:
        """One tick: a decision per pool, applied where it changes something."""
        now = self.clock()
        samples = self.sampler([p.queue for p in self.config.pools], now)
        decisions = []
        for pool in self.config.pools:
            sample = samples[pool.queue]
            current = self._current(pool, sample)
            decision = self.controller.decide(pool, sample, current, now)
            if decision.changes:
                decision = self._apply(pool, decision)
            if self.gauges is not None:
                self.gauges.record(decision, sample)
            decisions.append(decision)
        if self.publish_waits is not None:
            self.publish_waits([(p, samples[p.queue]) for p in self.config.pools], now)
        return decisions

    def run(
        self,
        interval_s: float | None = None,
        iterations: int | None = None,
        stop: threading.Event | None = None,
        on_step: Callable[[list[Decision]], None] | None = None,
    ) -> int:
        """Tick every `interval_s` until `stop` is set or `iterations` ran; returns ticks."""
        interval = interval_s or self.config.interval_s
        stop = stop or threading.Event()
        ticks = 0
        while not stop.is_set() and (iterations is None or ticks < iterations):
            decisions = self.step()
            ticks += 1
            if on_step is not None:
                on_step(decisions)
            if iterations is None or ticks < iterations:
                self._wait(interval, stop)
        return ticks

    def _wait(self, interval: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + interval
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(self.poll_s, left))
            if self.poller is not None and time.monotonic() < deadline:
                self.poller([p.queue for p in self.config.pools])

    def _current(self, pool: Pool, sample: QueueSample) -> int:
        try:
            known = self.driver.current(pool)
        except ScaleFailed as exc:
            log.warning("%s; using the %d live workers instead", exc, sample.workers)
            known = None
        return sample.workers if known is None else known

    def _apply(self, pool: Pool, decision: Decision) -> Decision:
        try:
            self.driver.scale(pool, decision.desired)
        except ScaleFailed as exc:
            log.error("%s", exc)
            reason = f"{decision.reason}; scaling failed: {exc}"
            return Decision(
                decision.queue, decision.current, decision.desired, decision.wanted, reason
            )
        log.info(
            "%s: %d -> %d replicas (%s)",
            pool.queue,
            decision.current,
            decision.desired,
            decision.reason,
        )
        return decision
