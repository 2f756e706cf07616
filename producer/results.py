"""One row per job of a batch: what the manifest and the contact sheet are made of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from transport.store import JobRecord, JobStore

READ_CHUNK = 1000
EXPIRED = "expired"  # the batch lists the job but its record is gone (TTL)


@dataclass(frozen=True)
class ResultRow:
    """A job's outcome as a user reads it."""

    source: str
    job_id: str
    state: str
    input: str | None = None
    output: str | None = None
    error_code: str | None = None
    error: str | None = None
    attempts: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_record(cls, job_id: str, source: str, record: JobRecord | None) -> ResultRow:
        if record is None:
            return cls(source=source, job_id=job_id, state=EXPIRED)
        return cls(
            source=source,
            job_id=job_id,
            state=record.state.value,
            input=record.input,
            output=record.output,
            error_code=record.error_code.value if record.error_code else None,
            error=record.error_message,
            attempts=record.attempts,
            timings=timings(record),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timings(record: JobRecord) -> dict[str, float]:
    """Seconds spent waiting in the queue and rendering, where the record knows them."""
    out: dict[str, float] = {}
    started = record.running_at  # the last delivery's start, after any retries
    finished = record.finished_at
    if record.queued_at is not None and started is not None:
        out["queue_s"] = round(max(0.0, started - record.queued_at), 3)
    if started is not None and finished is not None:
        out["run_s"] = round(max(0.0, finished - started), 3)
    if record.queued_at is not None and finished is not None:
        out["total_s"] = round(max(0.0, finished - record.queued_at), 3)
    return out


def batch_results(store: JobStore, name: str) -> list[ResultRow]:
    """Every job of the batch, sorted by source; read in pipelined chunks."""
    members = sorted(store.batch_members(name).items(), key=lambda kv: (kv[1], kv[0]))
    rows: list[ResultRow] = []
    for start in range(0, len(members), READ_CHUNK):
        chunk: Sequence[tuple[str, str]] = members[start : start + READ_CHUNK]
        records = store.get_many([job_id for job_id, _ in chunk])
        rows += [
            ResultRow.from_record(job_id, source, record)
            for (job_id, source), record in zip(chunk, records, strict=True)
        ]
    return rows
