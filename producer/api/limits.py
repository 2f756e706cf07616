"""Per-key request rate (GCRA) and per-tenant concurrent jobs, each one Lua script.

Own code, not limits/slowapi: one Lua script per check on Redis's clock, exact Retry-After.

GCRA keeps one number per key, the theoretical arrival time, and lets `rate` requests
through at once, then one every `60 / rate` seconds; a refused request learns exactly
how long to wait. Time is Redis's own (`TIME`), so API processes on machines whose
clocks disagree still share one limit.

A tenant's unfinished jobs are a ZSET of ids. Admission only scans it when it looks
full: members whose job finished or expired are dropped first (a job just reserved
and not yet recorded is kept for a grace period), so the count heals itself without
any hook in the worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis

RESERVE_GRACE_S = 30  # a reserved id with no job record yet is young, not gone

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if now < tat - tolerance then
  return {0, tostring(tat - tolerance - now)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0'}
"""

_RESERVE = """
local limit = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local prefix = ARGV[4]
local wanted = #ARGV - 5
local count = redis.call('ZCARD', KEYS[1])
if count + wanted > limit then
  local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id, since = members[i], tonumber(members[i + 1])
    local state = redis.call('HGET', prefix .. id, 'state')
    local finished = state == 'succeeded' or state == 'failed' or state == 'canceled'
    if finished or (not state and since < now - grace) then
      redis.call('ZREM', KEYS[1], id)
    end
  end
  count = redis.call('ZCARD', KEYS[1])
  if count + wanted > limit then return count end
end
for i = 6, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return -1
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class Limits:
    """The two admission checks, over one Redis."""

    def __init__(self, redis: Redis, keys: Keyspace, job_ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.job_ttl_s = job_ttl_s
        self._gcra = redis.register_script(_GCRA)
        self._reserve = redis.register_script(_RESERVE)

    def hit(self, key_id: str, rate_per_min: int) -> RateDecision:
        """Count one request against `key_id`'s rate; refused requests are not counted."""
        interval = 60.0 / rate_per_min
        tolerance = interval * (rate_per_min - 1)  # a full minute's burst
        ok, wait = self._gcra(keys=[self.keys.rate(key_id)], args=[repr(interval), repr(tolerance)])
        return RateDecision(bool(ok), float(wait))

    def reserve(self, tenant: str, job_ids: Sequence[str], limit: int) -> int | None:
        """Count `job_ids` as the tenant's running work; None if admitted, else how many
        unfinished jobs the tenant already has."""
        result = self._reserve(
            keys=[self.keys.tenant_active(tenant)],
            args=[
                limit,
                repr(time.time()),
                RESERVE_GRACE_S,
                self.keys.job(""),
                self.job_ttl_s,
                *job_ids,
            ],
        )
        return None if int(result) < 0 else int(result)

    def release(self, tenant: str, job_ids: Sequence[str]) -> None:
        """Give reserved slots back (a submission that failed after reserving)."""
        if job_ids:
            self.redis.zrem(self.keys.tenant_active(tenant), *job_ids)
