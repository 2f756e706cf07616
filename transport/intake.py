"""Intake: accepted jobs that are not on a render queue yet.

A job whose input is remote (an `https://` URL or an `s3://` object), and every job of a
batch, is recorded as `queued` at once (so `GET`, cancel, batch counts and webhooks work
as for any job) but its Celery message is held back in the tenant's intake ZSET
(`Keyspace.intake(tenant)`). The API's intake runner (`producer.api.intake_runner`) fetches
and vets the input there, under the key's caps, with a per-tenant limit, and only then puts
the message on its queue. So a slow or huge input never holds a render slot, and a batch
larger than the key's concurrency waits here for slots instead of being refused.

Every change is one Lua script: staging writes the record, the batch counters and the
intake entry together; publishing re-checks that the job is still `queued` (a cancel may
have come first) and pushes the message in the same step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from jobs.schema import Job
from transport.keyspace import Keyspace
from transport.messages import priority_list, render_message

if TYPE_CHECKING:
    from redis import Redis

_STAGE = """
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then return 0 end
local now = ARGV[1]
redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at', now, 'updated_at', now,
           'attempts', 0, unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'total', 1)
  redis.call('HINCRBY', KEYS[2], 'queued', 1)
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  redis.call('SADD', KEYS[6], ARGV[3])
end
redis.call('ZADD', KEYS[4], now, ARGV[5])
redis.call('SADD', KEYS[5], ARGV[6])
return 1
"""

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then
  if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
  return false
end
redis.call('ZADD', KEYS[1], ARGV[2], due[1])
return due[1]
"""

_PUBLISH = """
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'job', ARGV[2], 'input', ARGV[3])
redis.call('HDEL', KEYS[1], 'intake')
redis.call('LPUSH', KEYS[2], ARGV[4])
return 1
"""


class Intake:
    """The intake ZSETs of one Redis: stage, claim, defer, publish, drop."""

    def __init__(self, redis: Redis, keys: Keyspace, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self._stage = redis.register_script(_STAGE)
        self._claim = redis.register_script(_CLAIM)
        self._publish = redis.register_script(_PUBLISH)
        self.on_stage: Callable[[], None] = lambda: None  # wakes this process's runner

    def stage(self, jobs: Sequence[Job], queue: str, owner: dict[str, str]) -> None:
        """Record `jobs` as queued, held in their tenant's intake; `owner` holds the
        `tenant` and `api_key` fields written with each record."""
        tenant = owner["tenant"]
        now = repr(time.time())
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            batch = job.batch or ""
            fields = {
                "id": job.id,
                "queue": queue,
                "batch": batch,
                "source": job.input,
                "input": job.input,
                "created_at": repr(job.created_at),
                "job": json.dumps(job.model_dump(mode="json", by_alias=True)),
                "intake": "1",
                **owner,
            }
            if job.cancel_after is not None:
                fields["cancel_after"] = repr(job.cancel_after)
            self._stage(
                keys=[
                    self.keys.job(job.id),
                    self.keys.batch(batch),
                    self.keys.batch_jobs(batch),
                    self.keys.intake(tenant),
                    self.keys.intake_tenants(),
                    self.keys.batches(),
                ],
                args=[now, self.ttl_s, batch, job.input, job.id, tenant, *_flat(fields)],
                client=pipe,
            )
        pipe.execute()
        self.on_stage()

    def waiting(self, tenant: str) -> int:
        """How many of the tenant's jobs are in intake."""
        return int(self.redis.zcard(self.keys.intake(tenant)))

    def tenants(self) -> list[str]:
        return sorted(_text(t) for t in self.redis.smembers(self.keys.intake_tenants()))

    def claim(self, tenant: str, lease_s: float) -> str | None:
        """The id of one due job of `tenant`, leased for `lease_s` (it comes due again if
        its claimer dies); None when none is due."""
        now = time.time()
        found = self._claim(
            keys=[self.keys.intake(tenant), self.keys.intake_tenants()],
            args=[repr(now), repr(now + lease_s), tenant],
        )
        return _text(found) if found else None

    def defer(self, tenant: str, job_id: str, due: float) -> None:
        self.redis.zadd(self.keys.intake(tenant), {job_id: due}, xx=True)

    def drop(self, tenant: str, job_id: str) -> None:
        self.redis.zrem(self.keys.intake(tenant), job_id)

    def publish(self, tenant: str, job: Job, queue: str) -> bool:
        """Put the job's message on `queue` (with its input as fetched); False if it is no
        longer queued (canceled, expired)."""
        payload = job.model_dump(mode="json", by_alias=True)
        message = render_message(job.id, payload, queue, job.priority)
        done = self._publish(
            keys=[
                self.keys.job(job.id),
                priority_list(queue, job.priority),
                self.keys.intake(tenant),
            ],
            args=[job.id, json.dumps(payload), job.input, message],
        )
        return bool(done)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _flat(fields: dict[str, Any]) -> list[str]:
    return [str(part) for item in fields.items() for part in item]
