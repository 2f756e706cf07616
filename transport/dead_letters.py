"""The dead-letter list: messages whose job could not run because its record was gone.

Such a message used to be dropped with a warning, so an evicted job vanished without a
trace. Now its record is rewritten as `failed` with the reason (what `darkroom status`
and the API show) and an entry is appended to `Keyspace.dead_letter()`, a list with no
TTL, capped at `CAP` entries, newest first.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from jobs.states import ErrorCode, JobState
from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis

CAP = 100_000


def dead_letter(
    redis: Redis, keys: Keyspace, ttl_s: int, job_id: str, payload: dict[str, Any], reason: str
) -> None:
    """Record the job as failed with `reason` and append it to the dead-letter list."""
    now = repr(time.time())
    entry = json.dumps({"id": job_id, "reason": reason, "at": float(now), "job": payload})
    record: dict[Any, Any] = {
        "id": job_id,
        "state": JobState.FAILED.value,
        "failed_at": now,
        "updated_at": now,
        "error_code": ErrorCode.INTERNAL.value,
        "error_message": reason,
        "job": json.dumps(payload),
        "input": str(payload.get("input", "")),
    }
    pipe = redis.pipeline(transaction=True)
    pipe.hset(keys.job(job_id), mapping=record)
    pipe.expire(keys.job(job_id), ttl_s)
    pipe.lpush(keys.dead_letter(), entry)
    pipe.ltrim(keys.dead_letter(), 0, CAP - 1)
    pipe.execute()


def newest(redis: Redis, keys: Keyspace, count: int = 100) -> list[dict[str, Any]]:
    """The newest `count` entries, newest first."""
    return [json.loads(raw) for raw in redis.lrange(keys.dead_letter(), 0, count - 1)]
