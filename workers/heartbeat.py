"""Worker heartbeats, unique worker names, and the sweep that requeues abandoned jobs.

kombu only restores an unacknowledged message once it is older than the visibility
timeout, which must exceed the longest render (else long renders run twice). So a
SIGKILLed worker's job would wait an hour. Instead every running attempt renews a
short-TTL lease (`transport.attempts`) and every live worker beats a short-TTL key; one
worker at a time (a Redis lock) sweeps: a running job whose lease expired goes back to
the front of its queue (its unacked message, or one rebuilt from its payload), and so
does a retrying job whose worker stopped beating.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from subprocess import Popen, TimeoutExpired
from typing import TYPE_CHECKING, Any

from jobs.errors import ConfigError
from transport.direct import return_direct
from transport.keyspace import Keyspace
from transport.lost import lost_queued
from transport.messages import UNACKED_HASH, UNACKED_INDEX, priority_list
from transport.redis_config import eviction_problem
from transport.store import JobStore

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# Put a message back only if it is still the one we read: a worker may ack it meanwhile.
_RESTORE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
"""

# How often the sweeping worker re-reads Redis's eviction policy.
EVICTION_CHECK_S = 30.0
# A delivered message whose job never reached `running` (its worker died between
# receiving and starting it) is put back after this long.
UNSTARTED_GRACE_S = 30.0


class NameInUse(ConfigError):
    """Another live worker beats under the name a worker was asked to start with."""


def claim_name(
    redis: Redis, keys: Keyspace, hostname: str, incarnation: str | None, ttl_s: float
) -> None:
    """Take `hostname` for this start of a worker: a name is unique while its owner lives.

    A heartbeat already under the name that is renewed while we watch belongs to a live
    worker: refuse. One that is not renewed is a dead predecessor's (a worker restarted
    in place): take the name once it expires (within its TTL; `ttl_s` is ours, the wait
    is capped at 30 TTLs).

    Raises:
        NameInUse: with the live owner's pid and start time.
    """
    key = keys.worker(hostname)
    first: Any = None
    deadline = time.monotonic() + 30 * ttl_s
    while True:
        mine: dict[str, Any] = {"hostname": hostname, "incarnation": incarnation,
                                "pid": os.getpid(), "at": time.time(), "holding": [],
                                "ready": False}  # fmt: skip
        if redis.set(key, json.dumps(mine), nx=True, px=int(ttl_s * 1000)):
            redis.sadd(keys.workers(), hostname)
            return
        seen = redis.get(key)
        if seen is None:
            continue
        first = first or seen
        if seen != first or time.monotonic() > deadline:
            owner = json.loads(seen)
            raise NameInUse(
                f"worker name {hostname} is in use by a live worker (pid {owner.get('pid')}, "
                f"beating since {time.ctime(owner.get('started_at') or owner.get('at') or 0)}); "
                "start this one with another --name, or stop that one first"
            )
        time.sleep(min(0.1, ttl_s / 10))


@dataclass
class Heartbeat:
    """Beats `Keyspace.worker(hostname)` and, when it holds the lock, sweeps dead workers."""

    redis: Redis
    keys: Keyspace
    hostname: str
    info: dict[str, object]
    interval_s: float = 1.0
    ttl_s: float = 4.0
    holding: Callable[[], list[str]] = list
    """Ids of the jobs this worker holds now (received or running), advertised in each beat."""
    resident: Callable[[], list[str]] = list
    """Model refs resident in this worker's processes (most recently used first), advertised
    in each beat for model-aware claiming (`workers.affinity`)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _healthy_since: float | None = None
    _eviction_checked: float = float("-inf")
    _lost_checks: int = 2
    """Looks for queued jobs whose message was lost still to make (`transport.lost`): two
    at start and after every spell without Redis, a sweep apart."""
    _suspects: set[str] = field(default_factory=set)

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="darkroom-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s * 2)
        self.redis.delete(self.keys.worker(self.hostname), self.keys.resident(self.hostname))

    def beat(self) -> None:
        record = {
            **self.info,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "at": time.time(),
            "holding": self.holding(),
            "resident": self.resident(),
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.worker(self.hostname), json.dumps(record), px=int(self.ttl_s * 1000))
        pipe.sadd(self.keys.workers(), self.hostname)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
                now = time.monotonic()
                self._healthy_since = self._healthy_since or now
                # After Redis comes back every heartbeat has expired: wait a lifetime for
                # the others to beat again before judging any of them dead.
                if now - self._healthy_since >= self.ttl_s and self._hold_sweep_lock():
                    sweep(self.redis, self.keys)
                    self._find_lost()
                    self._watch_eviction(now)
            except Exception:  # the heartbeat must outlive a Redis restart
                self._healthy_since = None
                self._lost_checks = 2
                log.warning("heartbeat failed; retrying", exc_info=True)

    def _find_lost(self) -> None:
        """Requeue queued jobs found without a message on two looks in a row (a message
        between kombu's BRPOP and its unacked write is seen on the second look)."""
        if self._lost_checks <= 0:
            return
        held = {
            str(job_id)
            for beat in live_workers(self.redis, self.keys).values()
            for job_id in beat.get("holding") or []
        }
        lost = set(lost_queued(self.redis, self.keys, held))
        store = JobStore(self.redis, self.keys)
        for job_id in sorted(lost & self._suspects):
            if store.requeue_lost(job_id):
                log.warning("requeued queued job %s: its message was lost (Redis restart)", job_id)
        self._suspects = lost - self._suspects
        self._lost_checks -= 1
        if self._lost_checks == 0 and self._suspects:
            self._lost_checks = 1  # unconfirmed suspects: look once more

    def _watch_eviction(self, now: float) -> None:
        """Every `EVICTION_CHECK_S`, say loudly if Redis was switched to an evicting policy
        after start-up (the start-up check refuses one)."""
        if now < self._eviction_checked + EVICTION_CHECK_S:
            return
        self._eviction_checked = now
        problem = eviction_problem(self.redis)
        if problem:
            log.error("%s: jobs may be lost now", problem)

    def _hold_sweep_lock(self) -> bool:
        lock = f"{self.keys.prefix}:sweep-lock"
        ttl_ms = int(self.interval_s * 2000)
        if self.redis.set(lock, self.hostname, nx=True, px=ttl_ms):
            return True
        if self.redis.get(lock) == self.hostname.encode():
            self.redis.pexpire(lock, ttl_ms)
            return True
        return False


def live_workers(redis: Redis, keys: Keyspace) -> dict[str, dict[str, Any]]:
    """hostname -> heartbeat record of every worker beating now."""
    names = sorted(_text(n) for n in redis.smembers(keys.workers()))
    if not names:
        return {}
    records = redis.mget([keys.worker(n) for n in names])
    live = {n: json.loads(r) for n, r in zip(names, records, strict=True) if r}
    dead = set(names) - set(live)
    if dead:
        redis.srem(keys.workers(), *dead)
    return live


def sweep(redis: Redis, keys: Keyspace, now: float | None = None) -> list[str]:
    """Requeue jobs nobody is running any more; returns the job ids put back.

    A running job is abandoned once its attempt's lease has expired (the process running
    it was killed or cut off from Redis: `transport.attempts`), whatever its worker's
    name; a retrying job once the worker holding its delayed message stopped beating.
    Their unacknowledged messages go back to the front of their queues; a running job
    with no message left (lost in a Redis restart) is sent again from its payload. So do
    the jobs forwarded to a dead worker's direct queue (`transport.direct`).
    """
    now = time.time() if now is None else now
    live = live_workers(redis, keys)
    restored, with_message = _restore_unacked(redis, keys, live, now)
    for job_id in return_direct(redis, keys, live):
        log.warning("requeued job %s from the direct queue of a dead worker", job_id)
        restored.append(job_id)
    store = JobStore(redis, keys)
    for job_id in store.running_ids():
        if job_id in with_message:
            continue
        if store.requeue_orphan(job_id, "requeued: the attempt running it stopped renewing"):
            log.warning("requeued orphaned job %s (its attempt's lease expired)", job_id)
            restored.append(job_id)
    return restored


def _restore_unacked(
    redis: Redis, keys: Keyspace, live: Mapping[str, Mapping[str, Any]], now: float
) -> tuple[list[str], set[str]]:
    unacked = redis.hgetall(UNACKED_HASH)
    scored: Any = redis.zrange(UNACKED_INDEX, 0, -1, withscores=True)
    delivered_at: dict[Any, float] = dict(scored)
    restore = redis.register_script(_RESTORE)
    restored: list[str] = []
    with_message: set[str] = set()
    for tag, raw in unacked.items():
        try:
            message, _exchange, routing_key = json.loads(raw)
            job_id = message["headers"]["id"]
            priority = int(message["properties"].get("priority") or 0)
        except (ValueError, KeyError, TypeError):
            continue
        with_message.add(job_id)
        state, worker, incarnation = (
            (_text(v) or None) if v is not None else None
            for v in redis.hmget(keys.job(job_id), "state", "worker", "incarnation")
        )
        if state == "running" and redis.exists(keys.lease(job_id)):
            continue
        if not _abandoned(state, worker, incarnation, live, now - delivered_at.get(tag, now)):
            continue
        message["headers"]["redelivered"] = True
        if restore(
            keys=[UNACKED_HASH, UNACKED_INDEX, priority_list(routing_key, priority)],
            args=[tag, raw, json.dumps(message)],
        ):
            log.warning("requeued job %s from dead worker %s", job_id, worker or "?")
            restored.append(job_id)
    return restored, with_message


def _gone(
    worker: str | None, incarnation: str | None, live: Mapping[str, Mapping[str, Any]]
) -> bool:
    """The worker that claimed a job has stopped beating, or restarted under its name."""
    if not worker:
        return False
    beat = live.get(worker)
    if beat is None:
        return True
    return incarnation is not None and beat.get("incarnation") not in (None, incarnation)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _abandoned(
    state: str | None,
    worker: str | None,
    incarnation: str | None,
    live: Mapping[str, Mapping[str, Any]],
    age_s: float,
) -> bool:
    """An unacknowledged message nobody will finish: its job runs under no live lease,
    its worker is gone, or it was delivered long ago and never started."""
    if state == "running":
        return True  # the caller has seen its lease expired
    if state == "retrying" and worker:
        return _gone(worker, incarnation, live)
    if state == "queued":
        return age_s > UNSTARTED_GRACE_S
    return False


def wait_until_beating(
    redis: Redis,
    keys: Keyspace,
    name_prefix: str,
    *,
    proc: Popen[bytes] | None = None,
    timeout_s: float = 60,
) -> str:
    """Wait for a worker whose name starts with `name_prefix` to beat and consume; its
    hostname.

    Raises `RuntimeError` if `proc` (the worker's process) exits first, `TimeoutError`
    if nothing beats in time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beating = [
            h
            for h, beat in live_workers(redis, keys).items()
            if h.startswith(name_prefix) and beat.get("ready", True)
        ]
        if beating:
            return beating[0]
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker {name_prefix} exited with {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"no worker {name_prefix}* beat within {timeout_s:.0f} s")


def stop_process_group(proc: Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM a process started with `start_new_session=True` and its children (a warm
    shutdown lets a worker finish its job); SIGKILL them if they outlive `timeout_s`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
