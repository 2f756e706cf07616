"""What a schedule has done, kept in Redis so no scan is restored twice.

One hash per schedule: source URI -> `{"fp", "batch", "state", "error", "at"}`, where
`fp` fingerprints the scan as it was queued (size + mtime for a file, etag + size for
an S3 object) and `batch` is the batch its job went into. An entry is written as
`pending` *before* its job is queued, so a run that dies between the two leaves a
trace: the next run queues it again into the same batch, hence the same job id, which
`JobStore.enqueue` never runs twice. Job records expire; the ledger keeps the outcome.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from jobs.errors import DarkroomError
from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Entry:
    fp: str
    batch: str
    state: str = PENDING
    error: str | None = None
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Entry:
        return cls(**json.loads(raw))


class ScheduleBusy(DarkroomError):
    """Another process is running this schedule now."""


class Ledger:
    """The ledger, last-run time and run lock of one schedule."""

    def __init__(self, redis: Redis, prefix: str, schedule: str) -> None:
        self.redis = redis
        base = Keyspace(prefix).schedule(schedule)
        self.seen_key, self.last_key, self.lock_key = f"{base}:seen", f"{base}:last", f"{base}:lock"
        self._token = f"{os.getpid()}-{uuid.uuid4().hex}"

    def entries(self, sources: Sequence[str]) -> dict[str, Entry]:
        if not sources:
            return {}
        raw = self.redis.hmget(self.seen_key, list(sources))
        return {s: Entry.from_json(r) for s, r in zip(sources, raw, strict=True) if r}

    def record(self, entries: Iterable[tuple[str, Entry]]) -> None:
        mapping: dict[str | bytes, str | bytes] = {s: e.to_json() for s, e in entries}
        if mapping:
            self.redis.hset(self.seen_key, mapping=cast(Mapping[Any, Any], mapping))

    def size(self) -> int:
        return int(self.redis.hlen(self.seen_key))

    def last_run(self) -> float | None:
        raw = self.redis.get(self.last_key)
        return float(raw) if raw else None

    def set_last_run(self, at: float) -> None:
        self.redis.set(self.last_key, repr(at))

    def acquire(self, ttl_s: int = 3600) -> None:
        """Take the schedule's lock for `ttl_s` seconds, so one run at a time happens.

        Raises:
            ScheduleBusy: another process holds the schedule's lock.
        """
        if not self.redis.set(self.lock_key, self._token, nx=True, ex=ttl_s):
            raise ScheduleBusy(f"{self.lock_key} is held: the schedule is running elsewhere")

    def release(self) -> None:
        self.redis.eval(_RELEASE, 1, self.lock_key, self._token)
