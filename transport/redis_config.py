"""Is this Redis safe to hold jobs? The start-up check of the API, workers and `submit`.

Job records carry a TTL, so under any `maxmemory-policy` but `noeviction` (volatile-* as
much as allkeys-*) Redis may evict them, and with them queues, leases and heartbeats:
jobs vanish, or live workers look dead. Redis's own advice for queues is the same
(redis.io, "Key eviction"; Celery, Sidekiq and RQ documentation ask for `noeviction`).
Without AOF or RDB a restart loses every job: that is only warned about, since a
throwaway Redis (tests, a laptop) is legitimate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from jobs.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)
SAFE_POLICY = "noeviction"


class EvictingRedis(ConfigError):
    """Redis may evict darkroom's keys (its `maxmemory-policy` is not `noeviction`)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _config(redis: Redis, name: str) -> str | None:
    """One CONFIG GET value, or None where CONFIG is disabled (some managed Redis)."""
    try:
        found = redis.config_get(name)
    except ResponseError:
        return None
    value = found.get(name)
    return None if value is None else _text(value)


def maxmemory_policy(redis: Redis) -> str:
    """The server's `maxmemory-policy` (from CONFIG, else from INFO memory)."""
    policy = _config(redis, "maxmemory-policy")
    if policy is None:
        policy = _text(redis.info("memory").get("maxmemory_policy", SAFE_POLICY))
    return policy


def eviction_problem(redis: Redis) -> str | None:
    """What is wrong with the eviction policy, in words that say the fix; None if safe."""
    policy = maxmemory_policy(redis)
    if policy == SAFE_POLICY:
        return None
    return (
        f"Redis maxmemory-policy is {policy}, which lets Redis evict darkroom's job records, "
        f"queues and heartbeats; set maxmemory-policy {SAFE_POLICY} "
        f"(CONFIG SET maxmemory-policy {SAFE_POLICY}, and in redis.conf) or give darkroom "
        "its own Redis"
    )


def persistence_problem(redis: Redis) -> str | None:
    """None when AOF or RDB snapshots are on (or unknowable); else a warning text."""
    aof = _text(redis.info("persistence").get("aof_enabled", "1"))
    save = _config(redis, "save")
    if aof != "0" or save is None or save.strip():
        return None
    return (
        "Redis has neither AOF nor RDB persistence: a Redis restart loses every queued "
        "job; set appendonly yes (or a save schedule)"
    )


def check_redis(redis: Redis, who: str) -> None:
    """Refuse to run on a Redis that may evict keys; warn when it persists nothing.

    Raises:
        EvictingRedis: the message names the setting to use.
    """
    problem = eviction_problem(redis)
    if problem:
        raise EvictingRedis(f"{who} refuses to start: {problem}")
    warning = persistence_problem(redis)
    if warning:
        log.warning("%s: %s", who, warning)
