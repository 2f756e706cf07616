"""Worker heartbeats, and the sweep that requeues the jobs of workers that died.

kombu only restores an unacknowledged message once it is older than the visibility
timeout, which must exceed the longest render (else long renders run twice). So a
SIGKILLed worker's job would wait an hour. Instead every live worker beats a short-TTL
key; one worker at a time (a Redis lock) sweeps kombu's unacked hash and puts back at
the front of its queue every message whose job's worker has stopped beating.
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

from transport.keyspace import Keyspace
from transport.messages import UNACKED_HASH, UNACKED_INDEX, priority_list
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

# A delivered message whose job never reached `running` (its worker died between
# receiving and starting it) is put back after this long.
UNSTARTED_GRACE_S = 30.0
# A running job its live worker does not hold is an orphan after this long (the worker's
# list of held jobs is at most a beat old).
ORPHAN_GRACE_S = 10.0


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
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _healthy_since: float | None = None

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="darkroom-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s * 2)
        self.redis.delete(self.keys.worker(self.hostname))

    def beat(self) -> None:
        record = {
            **self.info,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "at": time.time(),
            "holding": self.holding(),
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
            except Exception:  # the heartbeat must outlive a Redis restart
                self._healthy_since = None
                log.warning("heartbeat failed; retrying", exc_info=True)

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
    """Requeue jobs that dead (or restarted) workers held; returns the job ids put back.

    First the unacknowledged messages of such workers go back to the front of their
    queues; then the registry of started jobs is read for jobs no worker holds and whose
    message is gone (a state write lost in a Redis restart): they are sent again from
    their stored payload.
    """
    now = time.time() if now is None else now
    live = live_workers(redis, keys)
    restored, with_message = _restore_unacked(redis, keys, live, now)
    store = JobStore(redis, keys)
    for job_id in store.running_ids():
        if job_id in with_message:
            continue
        state, worker, incarnation, running_at = (
            (_text(v) or None) if v is not None else None
            for v in redis.hmget(keys.job(job_id), "state", "worker", "incarnation", "running_at")
        )
        if state != "running":
            continue
        started = float(running_at or now)
        if _orphaned(worker, incarnation, job_id, live, now - started) and store.requeue_orphan(
            job_id, worker, incarnation, f"requeued: worker {worker} no longer holds it"
        ):
            log.warning("requeued orphaned job %s (worker %s)", job_id, worker)
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


def _orphaned(
    worker: str | None,
    incarnation: str | None,
    job_id: str,
    live: Mapping[str, Mapping[str, Any]],
    running_s: float,
) -> bool:
    if _gone(worker, incarnation, live):
        return True
    # alive, but not holding it: its message was acked or lost while Redis was away
    holding = (live.get(worker or "") or {}).get("holding")
    return holding is not None and job_id not in holding and running_s > ORPHAN_GRACE_S


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _abandoned(
    state: str | None,
    worker: str | None,
    incarnation: str | None,
    live: Mapping[str, Mapping[str, Any]],
    age_s: float,
) -> bool:
    """An unacknowledged message nobody will finish: its worker is gone, or it was
    delivered long ago and never started."""
    if state in ("running", "retrying") and worker:
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
    """Wait for a worker whose name starts with `name_prefix` to beat; its hostname.

    Raises `RuntimeError` if `proc` (the worker's process) exits first, `TimeoutError`
    if nothing beats in time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beating = [h for h in live_workers(redis, keys) if h.startswith(name_prefix)]
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
