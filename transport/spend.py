"""Hosted spend per UTC day, per tenant and in all, counted in Redis; caps checked atomically.

A call reserves its estimated price first (`reserve`), so concurrent workers cannot
together pass a cap; when the provider answers, `settle` replaces the estimate by what
the answer's token counts cost. Amounts are integer micro-USD (INCRBY, no float drift);
the counters expire two days after their day began.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis

MICRO = 1_000_000
KEEP_S = 2 * 24 * 3600
NO_TENANT = "-"  # jobs submitted without a tenant (CLI batches) share one counter

# KEYS: tenant counter, total counter. ARGV: amount, tenant cap, total cap, ttl (all integers).
# Returns {1, tenant spent, total spent} when reserved, {0, which cap, spent against it} when not.
_RESERVE = """
local tenant = tonumber(redis.call('GET', KEYS[1]) or '0')
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
local amount = tonumber(ARGV[1])
if tenant + amount > tonumber(ARGV[2]) then return {0, 'tenant', tenant} end
if total + amount > tonumber(ARGV[3]) then return {0, 'total', total} end
tenant = redis.call('INCRBY', KEYS[1], amount)
total = redis.call('INCRBY', KEYS[2], amount)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {1, tenant, total}
"""


def utc_day(now: float | None = None) -> str:
    """YYYY-MM-DD of `now` (epoch seconds) in UTC: the caps' accounting day."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


def to_micro(usd: float) -> int:
    return round(usd * MICRO)


@dataclass(frozen=True)
class Caps:
    """Daily hosted spend caps in USD: per tenant, and all tenants together."""

    tenant_usd: float
    total_usd: float


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: which cap, what it allows, what was spent."""

    cap: str  # "tenant" or "total"
    cap_usd: float
    spent_usd: float

    def describe(self, tenant: str) -> str:
        whose = f"tenant {tenant}'s" if self.cap == "tenant" else "this deployment's"
        return (
            f"{whose} hosted spend cap of USD {self.cap_usd:.2f} per day is reached "
            f"(USD {self.spent_usd:.3f} spent today, UTC); it resets at 00:00 UTC"
        )


class SpendLedger:
    """Reserve, settle and read hosted spend for one deployment's Redis."""

    def __init__(self, redis: Redis, keys: Keyspace, caps: Caps) -> None:
        self.redis = redis
        self.keys = keys
        self.caps = caps
        self._reserve = redis.register_script(_RESERVE)

    def _keys(self, tenant: str | None, day: str) -> list[str]:
        return [
            self.keys.hosted_spend(day, tenant or NO_TENANT),
            self.keys.hosted_spend_total(day),
        ]

    def reserve(self, tenant: str | None, usd: float, now: float | None = None) -> Refusal | None:
        """Count `usd` against today's caps; None when reserved, else the refusal."""
        caps = (to_micro(self.caps.tenant_usd), to_micro(self.caps.total_usd))
        reply = self._reserve(
            keys=self._keys(tenant, utc_day(now)), args=[to_micro(usd), *caps, KEEP_S]
        )
        if int(reply[0]) == 1:
            return None
        cap = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        cap_usd = self.caps.tenant_usd if cap == "tenant" else self.caps.total_usd
        return Refusal(cap, cap_usd, int(reply[2]) / MICRO)

    def settle(
        self, tenant: str | None, reserved_usd: float, actual_usd: float, now: float | None = None
    ) -> None:
        """Replace a reservation by the call's real cost (0 gives it all back)."""
        delta = to_micro(actual_usd) - to_micro(reserved_usd)
        if delta:
            pipe = self.redis.pipeline(transaction=True)
            for key in self._keys(tenant, utc_day(now)):
                pipe.incrby(key, delta)
            pipe.execute()

    def spent(self, tenant: str | None, now: float | None = None) -> tuple[float, float]:
        """(tenant's, everyone's) spend today in USD."""
        raw = self.redis.mget(self._keys(tenant, utc_day(now)))
        tenant_micro, total_micro = (int(value or 0) for value in raw)
        return tenant_micro / MICRO, total_micro / MICRO

    def room_for(self, tenant: str | None, usd: float, now: float | None = None) -> bool:
        """Whether `usd` more fits under both caps now (a read; `reserve` decides)."""
        tenant_spent, total_spent = self.spent(tenant, now)
        return (
            tenant_spent + usd <= self.caps.tenant_usd and total_spent + usd <= self.caps.total_usd
        )
