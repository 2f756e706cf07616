"""Replay a synthetic day against darkroom's autoscaler and a static pool sized for the peak.

The trace: a quiet night (a trickle of previews and archive restorations), a studio's
batch of 5,000 final renders submitted at once, then a SaaS preview burst that ramps
up, holds and ramps down. The service model: a replica takes `startup_s` to become
ready (pull, load the model) and costs GPU time from the moment it is asked for; each
job takes the lane's service time with log-normal jitter; a replica told to stop while
busy finishes its job first (Celery warm shutdown). Everything is seeded.

    python -m bench.autoscale_sim [--seed 7]

prints, per policy, GPU-minutes, preview wait percentiles, the batch's makespan and
the number of scaling actions. `tests/unit/test_autoscale_sim.py` runs the same code
on a shorter trace.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from workers.autoscale.controller import Controller, QueueSample
from workers.autoscale.pools import Pool, PoolConfig, parse_pools

PREVIEW, FINAL = "a10.preview", "a10.final"

SIM_POOLS = {
    "interval_s": 15,
    "pools": [
        {"queue": PREVIEW, "min_replicas": 1, "max_replicas": 12, "target_wait_s": 0.2,
         "target_utilization": 0.6, "service_time_s": 0.12, "scale_down_delay_s": 180},
        {"queue": FINAL, "min_replicas": 0, "max_replicas": 16, "drain_time_s": 1200,
         "service_time_s": 5.0, "idle_s": 600, "scale_down_delay_s": 120},
    ],
}  # fmt: skip


@dataclass(frozen=True)
class TraceSpec:
    """The shape of the day; the unit test shrinks it."""

    night_s: float = 6 * 3600
    night_preview_rps: float = 0.02
    night_final_every_s: float = 1200
    batch_size: int = 5000
    batch_at_s: float = 6 * 3600
    burst_at_s: float = 6.5 * 3600
    burst_ramp_s: float = 300
    burst_hold_s: float = 600
    burst_peak_rps: float = 25.0
    tail_s: float = 3600


@dataclass(frozen=True)
class ServiceModel:
    startup_s: dict[str, float] = field(default_factory=lambda: {PREVIEW: 30.0, FINAL: 90.0})
    service_s: dict[str, float] = field(default_factory=lambda: {PREVIEW: 0.12, FINAL: 5.0})
    jitter: float = 0.25

    def sample(self, queue: str, rng: random.Random) -> float:
        mean = self.service_s[queue]
        # log-normal with the given mean: mu = ln(mean) - sigma^2 / 2
        return rng.lognormvariate(math.log(mean) - self.jitter**2 / 2, self.jitter)


def build_trace(spec: TraceSpec, seed: int) -> tuple[list[tuple[float, str]], float]:
    """(arrival time, queue) sorted by time, and the horizon the trace covers."""
    rng = random.Random(seed)
    arrivals = [(t, PREVIEW) for t in _poisson(rng, 0, spec.night_s, spec.night_preview_rps)]
    arrivals += [(t, FINAL) for t in _poisson(rng, 0, spec.night_s, 1 / spec.night_final_every_s)]
    arrivals += [(spec.batch_at_s + i * 0.002, FINAL) for i in range(spec.batch_size)]
    ramp, hold, peak, low = (
        spec.burst_ramp_s,
        spec.burst_hold_s,
        spec.burst_peak_rps,
        spec.night_preview_rps,
    )
    phases: list[tuple[float, float, Callable[[float], float]]] = [
        (0.0, ramp, lambda x: low + (peak - low) * x),
        (ramp, hold, lambda x: peak),
        (ramp + hold, ramp, lambda x: peak - (peak - low) * x),
    ]
    for begin, length, rate_at in phases:
        start = spec.burst_at_s + begin
        arrivals += [(t, PREVIEW) for t in _ramp(rng, start, length, rate_at, peak)]
    horizon = spec.burst_at_s + 2 * ramp + hold + spec.tail_s
    return sorted(arrivals), horizon


def _poisson(rng: random.Random, start: float, length: float, rate: float) -> list[float]:
    times: list[float] = []
    t = start
    while True:
        t += rng.expovariate(rate)
        if t >= start + length:
            return times
        times.append(t)


def _ramp(
    rng: random.Random, start: float, length: float, rate_at: Callable[[float], float], peak: float
) -> list[float]:
    """Arrivals of a time-varying Poisson process, by thinning one at the peak rate."""
    return [
        t
        for t in _poisson(rng, start, length, peak)
        if rng.random() * peak <= rate_at((t - start) / length)
    ]


@dataclass
class PoolSim:
    """Replicas of one pool: idle, busy, starting, and busy ones told to stop after the job."""

    queue: str
    waiting: deque[float] = field(default_factory=deque)
    idle: int = 0
    busy: int = 0
    starting: int = 0
    draining: int = 0
    canceled_starts: int = 0
    done: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    waits: list[float] = field(default_factory=list)
    replica_s: float = 0.0
    busy_s: float = 0.0
    peak: int = 0
    actions: int = 0

    @property
    def requested(self) -> int:
        return self.idle + self.busy + self.starting - self.draining

    @property
    def alive(self) -> int:
        return self.idle + self.busy + self.starting


@dataclass
class Result:
    policy: str
    gpu_minutes: float
    preview_waits: list[float]
    final_waits: list[float]
    batch_makespan_s: float
    peak: dict[str, int]
    actions: int
    unfinished: int

    def preview_p(self, q: float) -> float:
        return _percentile(self.preview_waits, q)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Simulation:
    """Event-driven replay of a trace against a policy: the controller or a fixed size."""

    def __init__(self, config: PoolConfig, model: ServiceModel, seed: int) -> None:
        self.config, self.model = config, model
        self.rng = random.Random(seed + 1)
        self.pools = {p.queue: PoolSim(p.queue) for p in config.pools}
        # (time, sequence, kind, queue, (arrived, service seconds) of a finished job)
        self.events: list[tuple[float, int, str, str, tuple[float, float]]] = []
        self.seq, self.now = 0, 0.0
        self.batch_left, self.batch_done_at = 0, 0.0
        self.batch_window = (0.0, 0.0)

    def push(self, at: float, kind: str, queue: str, job: tuple[float, float] = (0, 0)) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, queue, job))

    def run(
        self,
        arrivals: list[tuple[float, str]],
        horizon: float,
        static: dict[str, int] | None,
        batch_window: tuple[float, float],
    ) -> None:
        controller = Controller()
        self.batch_window = batch_window
        self.batch_left = sum(1 for t, q in arrivals if q == FINAL and _inside(t, batch_window))
        for t, queue in arrivals:
            self.push(t, "arrive", queue)
        if static is None:
            self.push(0.0, "tick", "")
        # the day starts with each pool at its warm minimum (or its fixed size), ready
        for pool in self.config.pools:
            self.pools[pool.queue].idle = (static or {}).get(pool.queue, pool.min_replicas)
        while self.events and self.events[0][0] <= horizon:
            at, _, kind, queue, job = heapq.heappop(self.events)
            self._advance(at)
            if kind == "tick":
                self._tick(controller)
                self.push(at + self.config.interval_s, "tick", "")
            elif kind == "arrive":
                self.pools[queue].waiting.append(at)
                self._start_jobs(self.pools[queue])
            elif kind == "done":
                self._job_done(self.pools[queue], job)
            elif kind == "ready":
                self._replica_ready(self.pools[queue])
        self._advance(horizon)

    def _advance(self, to: float) -> None:
        for sim in self.pools.values():
            sim.replica_s += sim.alive * (to - self.now)
            sim.busy_s += sim.busy * (to - self.now)
        self.now = to

    def _tick(self, controller: Controller) -> None:
        for pool in self.config.pools:
            sim = self.pools[pool.queue]
            times = list(sim.done)
            # the observer's polls average in-flight jobs over the interval
            in_flight, sim.busy_s = sim.busy_s / self.config.interval_s, 0.0
            sample = QueueSample(
                pool.queue, len(sim.waiting), in_flight,
                sum(times) / len(times) if times else None, workers=sim.idle + sim.busy,
            )  # fmt: skip
            decision = controller.decide(pool, sample, sim.requested, self.now)
            if decision.changes:
                self._scale(pool, sim, decision.desired)

    def _scale(self, pool: Pool, sim: PoolSim, replicas: int) -> None:
        sim.actions += 1
        change = replicas - sim.requested
        if change > 0:
            undrain = min(change, sim.draining)
            sim.draining -= undrain
            sim.starting += change - undrain
            for _ in range(change - undrain):
                self.push(self.now + self.model.startup_s[pool.queue], "ready", pool.queue)
        for _ in range(-change):
            if sim.starting:
                sim.starting -= 1
                sim.canceled_starts += 1
            elif sim.idle:
                sim.idle -= 1
            else:
                sim.draining += 1
        sim.peak = max(sim.peak, sim.requested)

    def _start_jobs(self, sim: PoolSim) -> None:
        while sim.idle and sim.waiting:
            arrived = sim.waiting.popleft()
            sim.waits.append(self.now - arrived)
            sim.idle -= 1
            sim.busy += 1
            service = self.model.sample(sim.queue, self.rng)
            self.push(self.now + service, "done", sim.queue, (arrived, service))

    def _job_done(self, sim: PoolSim, job: tuple[float, float]) -> None:
        sim.busy -= 1
        if sim.draining:
            sim.draining -= 1
        else:
            sim.idle += 1
        sim.done.append(job[1])
        if sim.queue == FINAL and _inside(job[0], self.batch_window):
            self.batch_left -= 1
            if self.batch_left == 0:
                self.batch_done_at = self.now
        self._start_jobs(sim)

    def _replica_ready(self, sim: PoolSim) -> None:
        if sim.canceled_starts:
            sim.canceled_starts -= 1
            return
        sim.starting -= 1
        sim.idle += 1
        self._start_jobs(sim)


def _inside(t: float, window: tuple[float, float]) -> bool:
    return window[0] <= t <= window[1]


def simulate(
    policy: str,
    spec: TraceSpec,
    seed: int,
    model: ServiceModel | None = None,
    static: dict[str, int] | None = None,
) -> Result:
    """Replay the trace; `static` gives fixed replicas per queue instead of the controller."""
    config = parse_pools(SIM_POOLS, "bench.autoscale_sim")
    arrivals, horizon = build_trace(spec, seed)
    sim = Simulation(config, model or ServiceModel(), seed)
    batch_window = (spec.batch_at_s, spec.batch_at_s + spec.batch_size * 0.002)
    sim.run(arrivals, horizon, static, batch_window)
    pools = sim.pools
    return Result(
        policy=policy,
        gpu_minutes=sum(p.replica_s for p in pools.values()) / 60,
        preview_waits=pools[PREVIEW].waits,
        final_waits=pools[FINAL].waits,
        batch_makespan_s=(sim.batch_done_at - spec.batch_at_s) if sim.batch_done_at else math.inf,
        peak={q: (static or {}).get(q, p.peak) for q, p in pools.items()},
        actions=sum(p.actions for p in pools.values()),
        unfinished=sum(len(p.waiting) + p.busy for p in pools.values()),
    )


def compare(spec: TraceSpec, seed: int) -> list[Result]:
    """Autoscaled; static at the autoscaled peak; static at the mean load (cheap, late)."""
    scaled = simulate("autoscaled", spec, seed)
    peak = simulate("static-peak", spec, seed, static=dict(scaled.peak))
    arrivals, horizon = build_trace(spec, seed)
    work = ServiceModel().service_s
    mean = {
        q: max(1, math.ceil(sum(work[q] for _, aq in arrivals if aq == q) / horizon))
        for q in (PREVIEW, FINAL)
    }
    return [scaled, peak, simulate("static-mean", spec, seed, static=mean)]


def table(results: Sequence[Result]) -> str:
    head = (
        f"{'policy':<12} {'GPU-min':>9} {'preview p50':>12} {'p95':>8} {'p99':>8} "
        f"{'batch done':>11} {'replicas (preview/final)':>25} {'actions':>8}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        done = f"{r.batch_makespan_s / 60:.1f}m" if math.isfinite(r.batch_makespan_s) else "never"
        rows.append(
            f"{r.policy:<12} {r.gpu_minutes:>9.0f} {_wait(r.preview_p(0.5)):>12} "
            f"{_wait(r.preview_p(0.95)):>8} {_wait(r.preview_p(0.99)):>8} {done:>11} "
            f"{r.peak[PREVIEW]:>12}/{r.peak[FINAL]:<12} {r.actions:>8}"
        )
    return "\n".join(rows)


def _wait(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds / 60:.0f}min"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    spec = TraceSpec()
    scaled, static, _ = results = compare(spec, args.seed)
    print(f"trace: {spec.night_s / 3600:.0f} h night, batch of {spec.batch_size} finals, "
          f"preview burst to {spec.burst_peak_rps:g}/s; seed {args.seed}")  # fmt: skip
    print(f"previews: {len(scaled.preview_waits)}, finals: {len(scaled.final_waits)}")
    print(table(results))
    saved = 1 - scaled.gpu_minutes / static.gpu_minutes
    print(f"autoscaled uses {saved:.0%} fewer GPU-minutes; preview p95 wait "
          f"{scaled.preview_p(0.95) * 1000:.0f} ms (target 200 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
