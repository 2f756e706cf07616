"""The autoscaler's decision: how many replicas a pool needs now. Pure logic, no I/O.

Own code, not KEDA's Redis scaler: it sees list length only, and only in Kubernetes.

Per pool, from its queue's depth, jobs in flight, replicas and measured service time:

    busy    = load / utilization               replicas the current load keeps busy,
                                               with headroom for new arrivals; `load` is
                                               jobs in flight averaged over the interval,
                                               smoothed over ticks (an instant's count
                                               of short previews is noise)
    backlog = depth * service_time / target    replica capacity that drains the queue
                                               within the lane's target
    wanted  = ceil((busy + backlog) / concurrency), clamped to [min, max]

Scaling up happens at once; scaling down goes only as low as the highest wish of the
last `scale_down_delay_s` (the Kubernetes HPA's stabilization window), so a pool does
not flap between two ticks. A final pool with `min_replicas: 0` keeps one replica
until its queue has been idle for `idle_s`, then goes to zero; a queued job wakes it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from workers.autoscale.pools import Pool

# Demand this far above a whole replica does not ask for another one: the smoothed
# load's tail and float error would otherwise hold a replica that nothing needs.
NOISE_REPLICAS = 0.1


@dataclass(frozen=True)
class QueueSample:
    """What the observer saw of one queue at one instant."""

    queue: str
    depth: int
    in_flight: float = 0
    """Jobs running: best the mean over the last interval (the observer polls it)."""
    service_time_s: float | None = None
    oldest_age_s: float | None = None
    workers: int = 0


@dataclass(frozen=True)
class Decision:
    """The controller's answer for one pool, with the reason a person can read."""

    queue: str
    current: int
    desired: int
    wanted: int
    reason: str

    @property
    def changes(self) -> bool:
        return self.desired != self.current


@dataclass
class _Memory:
    """What the controller remembers of one pool between ticks."""

    wishes: deque[tuple[float, int]] = field(default_factory=deque)
    last_busy_at: float | None = None
    load: float | None = None


def wanted_replicas(pool: Pool, sample: QueueSample, load: float | None = None) -> tuple[int, str]:
    """Replicas the load asks for, before bounds and hysteresis, and why.

    `load` is the smoothed number of jobs in flight (default: the sample's own count).
    """
    load = sample.in_flight if load is None else load
    service = sample.service_time_s or pool.service_time_s
    busy = load / pool.utilization
    backlog = sample.depth * service / pool.target_s
    wanted = max(0, math.ceil((busy + backlog) / pool.concurrency - NOISE_REPLICAS))
    why = (
        f"{sample.depth} queued x {service:.2f} s / {pool.target_s:g} s target"
        f" + {load:.1f} in flight / {pool.utilization:g} busy"
    )
    return wanted, why


def _smooth(previous: float | None, value: float, alpha: float) -> float:
    return value if previous is None else alpha * value + (1 - alpha) * previous


class Controller:
    """Decides replicas per pool; keeps only the memory hysteresis needs."""

    def __init__(self) -> None:
        self._memory: dict[str, _Memory] = {}

    def decide(self, pool: Pool, sample: QueueSample, current: int, now: float) -> Decision:
        memory = self._memory.setdefault(pool.queue, _Memory())
        # 1. what the load wants, with a floor that keeps a pool awake until it idled
        memory.load = _smooth(memory.load, sample.in_flight, pool.load_smoothing)
        wanted, why = wanted_replicas(pool, sample, memory.load)
        floor, floor_why = self._floor(pool, sample, memory, current, now)
        bounded = min(max(wanted, floor), pool.max_replicas)
        # 2. remember the wish; scale down only to the highest one of the window
        memory.wishes.append((now, bounded))
        while memory.wishes and memory.wishes[0][0] < now - pool.scale_down_delay_s:
            memory.wishes.popleft()
        desired, hold_why = self._stabilize(pool, bounded, current, memory)
        reason = "; ".join(r for r in (why, floor_why, hold_why) if r)
        if wanted > pool.max_replicas:
            reason += f"; capped at max {pool.max_replicas}"
        return Decision(pool.queue, current, desired, wanted, reason)

    def _floor(
        self, pool: Pool, sample: QueueSample, memory: _Memory, current: int, now: float
    ) -> tuple[int, str]:
        if sample.depth or sample.in_flight or memory.last_busy_at is None:
            memory.last_busy_at = now
        if not pool.scales_to_zero:
            return pool.min_replicas, ""
        if sample.depth or sample.in_flight:
            return 1, ""
        idle = now - memory.last_busy_at
        if current > 0 and idle < pool.idle_s:
            return 1, f"idle {idle:.0f} s of {pool.idle_s:g} s before zero"
        return 0, ""

    def _stabilize(
        self, pool: Pool, bounded: int, current: int, memory: _Memory
    ) -> tuple[int, str]:
        if bounded >= current:
            return bounded, ""
        highest = max(wish for _, wish in memory.wishes)
        if highest >= current:
            return current, f"holding {current}: wanted more within {pool.scale_down_delay_s:g} s"
        if bounded > 0 and (current - highest) / current <= pool.tolerance:
            return current, f"holding {current}: within {pool.tolerance:.0%} tolerance"
        return highest, ""
