"""One job, one running attempt: the claim, its lease, and the fence on every later write.

`claim` starts an attempt: one Lua script moves the job to `running`, records a fresh
attempt id in the job's hash and sets a short-TTL lease key holding that id. It refuses a
job that is finished, or running under a lease that is still alive, so two deliveries of
one job (Celery's reject-requeue plus the sweep's requeue, a cancel + resume, a worker
restarted under its name) can never render it at the same time.

The process running the attempt renews the lease (`renew`) while it renders; a worker
that is killed or cut off from Redis stops renewing, the lease expires and the sweep
hands the job to another worker. Every write an attempt makes afterwards (progress,
state, the output itself) is fenced by its id: once another attempt holds the job, the
old one (a zombie) can neither publish a result nor move the state. This is the fencing
token of Kleppmann's "How to do distributed locking" (2016), with the job hash as the
resource that checks it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis

_CLAIM = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
if cur == 'running' then
  local lease = redis.call('GET', KEYS[2])
  -- a live lease is only taken over when the caller proved its holder dead (ARGV[6])
  if lease and lease ~= ARGV[6] then return {0, 'held'} end
elseif cur ~= 'queued' and cur ~= 'retrying' then
  return {0, cur}
end
local now = ARGV[1]
redis.call('HSET', KEYS[1], 'state', 'running', 'running_at', now, 'updated_at', now,
           'attempt', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
local id = redis.call('HGET', KEYS[1], 'id')
if id then redis.call('SADD', KEYS[3], id) end
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch and batch ~= '' and cur ~= 'running' then
  redis.call('HINCRBY', ARGV[5] .. batch, cur, -1)
  redis.call('HINCRBY', ARGV[5] .. batch, 'running', 1)
end
return {1, cur}
"""

# 1: the attempt still owns the job (lease renewed); 2: it does, and a cancel was asked;
# 0: another attempt holds it, or the job left `running`.
_RENEW = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 2 end
return 1
"""

_PROGRESS = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
"""


class Ownership(Enum):
    """What `renew` found: the attempt owns the job, owns it but must stop, or lost it."""

    OWNED = 1
    CANCEL_REQUESTED = 2
    LOST = 0


@dataclass(frozen=True)
class ClaimRefused:
    """Why a delivery did not start an attempt: `held` (a live attempt runs it), `missing`
    (no record), or the state the job is in."""

    reason: str


@dataclass(frozen=True)
class Attempt:
    """A started attempt: its id is the fencing token of every write it makes."""

    job_id: str
    id: str
    previous: str
    """The state the job left (`queued`, `retrying`, or `running` for a dead attempt)."""


def new_attempt_id() -> str:
    return uuid.uuid4().hex


class Attempts:
    """The claim / renew / fenced-progress scripts bound to one Redis and keyspace.

    `lease_s` is how long an attempt stays alive without a renewal: after it, a killed or
    cut-off worker's job may be claimed again.
    """

    def __init__(self, redis: Redis, keys: Keyspace, *, ttl_s: int, lease_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.lease_ms = max(1, int(lease_s * 1000))
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._progress = redis.register_script(_PROGRESS)

    def claim(
        self, job_id: str, *, dead_attempt: str = "", **fields: Any
    ) -> Attempt | ClaimRefused:
        """Start an attempt, or say why not. `fields` are set on the job's hash with it.

        `dead_attempt`: the id of an attempt the caller knows has died (its process on
        this host is gone); its lease, if it still holds it, is taken over at once.
        """
        attempt_id = new_attempt_id()
        flat = [str(x) for kv in fields.items() if kv[1] is not None for x in kv]
        ok, state = self._claim(
            keys=[self.keys.job(job_id), self.keys.lease(job_id), self.keys.running()],
            args=[repr(time.time()), self.ttl_s, attempt_id, self.lease_ms,
                  self.keys.batch(""), dead_attempt or "-", *flat],
        )  # fmt: skip
        state = state.decode() if isinstance(state, bytes) else str(state)
        if not ok:
            return ClaimRefused(state or "missing")
        return Attempt(job_id, attempt_id, state)

    def renew(self, attempt: Attempt) -> Ownership:
        """Extend the attempt's lease if it still owns the job."""
        code = self._renew(
            keys=[self.keys.job(attempt.job_id), self.keys.lease(attempt.job_id)],
            args=[attempt.id, self.lease_ms],
        )
        return Ownership(int(code))

    def progress(self, attempt: Attempt, fraction: float) -> bool:
        """Record progress (0..1) if the attempt still owns the job."""
        return bool(
            self._progress(
                keys=[self.keys.job(attempt.job_id)], args=[attempt.id, f"{fraction:.3f}"]
            )
        )

    def lease_alive(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.keys.lease(job_id)))
