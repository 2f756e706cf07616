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
from collections.abc import Mapping
from dataclasses import dataclass, field
from subprocess import Popen, TimeoutExpired
from typing import TYPE_CHECKING, Any

from jobs.keys import Keys
from jobs.queues import UNACKED_HASH, UNACKED_INDEX, list_key

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


@dataclass
class Heartbeat:
    """Beats `Keys.worker(hostname)` and, when it holds the lock, sweeps dead workers."""

    redis: Redis
    keys: Keys
    hostname: str
    info: dict[str, object]
    interval_s: float = 1.0
    ttl_s: float = 4.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

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
        record = {**self.info, "hostname": self.hostname, "pid": os.getpid(), "at": time.time()}
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.worker(self.hostname), json.dumps(record), px=int(self.ttl_s * 1000))
        pipe.sadd(self.keys.workers(), self.hostname)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
                if self._hold_sweep_lock():
                    sweep(self.redis, self.keys)
            except Exception:  # the heartbeat must outlive a Redis restart
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


def live_workers(redis: Redis, keys: Keys) -> dict[str, dict[str, object]]:
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


def sweep(redis: Redis, keys: Keys, now: float | None = None) -> list[str]:
    """Requeue messages held by dead workers; returns the job ids put back."""
    now = time.time() if now is None else now
    unacked = redis.hgetall(UNACKED_HASH)
    if not unacked:
        return []
    live = live_workers(redis, keys)
    scored: Any = redis.zrange(UNACKED_INDEX, 0, -1, withscores=True)
    delivered_at: dict[Any, float] = dict(scored)
    restore = redis.register_script(_RESTORE)
    restored = []
    for tag, raw in unacked.items():
        try:
            message, _exchange, routing_key = json.loads(raw)
            job_id = message["headers"]["id"]
            priority = int(message["properties"].get("priority") or 0)
        except (ValueError, KeyError, TypeError):
            continue
        state, worker = (
            _text(v) if v else None for v in redis.hmget(keys.job(job_id), "state", "worker")
        )
        if not _abandoned(state, worker, live, now - delivered_at.get(tag, now)):
            continue
        message["headers"]["redelivered"] = True
        if restore(
            keys=[UNACKED_HASH, UNACKED_INDEX, list_key(routing_key, priority)],
            args=[tag, raw, json.dumps(message)],
        ):
            log.warning("requeued job %s from dead worker %s", job_id, worker or "?")
            restored.append(job_id)
    return restored


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _abandoned(
    state: str | None, worker: str | None, live: Mapping[str, object], age_s: float
) -> bool:
    if state in ("running", "retrying") and worker:
        return worker not in live
    if state == "queued":
        return age_s > UNSTARTED_GRACE_S
    return False


def wait_until_beating(
    redis: Redis,
    keys: Keys,
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
