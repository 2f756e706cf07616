"""One run of a schedule: find scans not yet restored, queue them, report.

Own code, not a scheduler library's job store: "never restore a scan twice" needs the
per-scan ledger (`producer.schedule_ledger`), which no scheduler keeps.

1. list the source's images (`producer.sources`) and fingerprint each;
2. bring the ledger up to date with the jobs of earlier runs (succeeded, failed);
3. sort every scan: new or changed -> queue; restored, in progress or failed with
   the same fingerprint -> skip; pending with no job (a run died) -> queue again;
4. cap at `max_per_run`, mark the chosen ones pending, queue them at the
   schedule's low priority through `producer.batch.submit_batch`;
5. optionally wait for them, then write `<out>/_reports/<name>/<run>.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from jobs.errors import SchemaError
from jobs.schema import Lane
from jobs.states import JobState
from producer.batch import submit_batch
from producer.schedule_config import Schedule
from producer.schedule_ledger import FAILED, PENDING, SUCCEEDED, Entry, Ledger
from producer.sources import SourceItem, expand_sources
from transport.keyspace import Keyspace
from transport.store import JobStore

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings

ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)
MISSING = "missing"


@dataclass
class RunReport:
    """What one run found and did; written as JSON next to the outputs."""

    schedule: str
    run: str
    started_at: float
    found: int = 0
    queued: int = 0
    queued_sources: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    succeeded: int = 0
    """Jobs of this run that succeeded (known only when the run waited)."""
    failed: list[dict[str, str]] = field(default_factory=list)
    """Source, reason, and whether it failed in this run or an earlier one."""
    waited: bool = False
    finished_at: float | None = None
    report_uri: str | None = None

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def fingerprints(items: Sequence[SourceItem], settings: Settings) -> dict[str, str]:
    """uri -> what changes when the scan changes: size + mtime, or S3 etag + size."""
    found: dict[str, str] = {}
    s3 = [i.uri for i in items if i.uri.startswith("s3://")]
    if s3:
        found.update(_s3_fingerprints(s3, settings))
    for item in items:
        if item.uri.startswith("file://"):
            stat = os.stat(unquote(urlparse(item.uri).path))
            found[item.uri] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return found


def _s3_fingerprints(uris: Sequence[str], settings: Settings) -> dict[str, str]:
    from storage.location import split_s3_uri
    from storage.s3 import s3_client

    client = s3_client(settings)
    wanted = set(uris)
    found: dict[str, str] = {}
    # one listing per bucket and common prefix, not one HEAD per scan
    for bucket, prefix in {(b, os.path.dirname(k)) for b, k in map(split_s3_uri, uris)}:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                uri = f"s3://{bucket}/{obj['Key']}"
                if uri in wanted:
                    found[uri] = f"{obj['ETag'].strip(chr(34))}:{obj['Size']}"
    return found


def run_schedule(
    settings: Settings,
    redis: Redis,
    schedule: Schedule,
    *,
    wait_s: float | None = None,
    retry_failed: bool = False,
) -> RunReport:
    """One run (see the module's recipe); `wait_s` waits that long for its jobs."""
    started = time.time()
    # unique per run: a changed scan must get a new job id, even within one second
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{os.urandom(2).hex()}"
    report = RunReport(schedule.name, run_id, started)
    store = JobStore(redis, Keyspace(settings.key_prefix), ttl_s=settings.job_ttl_s)
    ledger = Ledger(redis, settings.key_prefix, schedule.name)
    ledger.acquire()
    try:
        # 1-2. what is there, and what became of the jobs of earlier runs
        items = _list(schedule, settings)
        report.found = len(items)
        prints = fingerprints(items, settings)
        entries = _refresh(store, ledger, ledger.entries([i.uri for i in items]), items)
        # 3-4. choose, mark pending, queue
        chosen = _choose(schedule, items, prints, entries, report, retry_failed)
        batch = f"{schedule.name}-{run_id}"
        _queue(settings, redis, schedule, ledger, chosen, prints, entries, batch, report)
        ledger.set_last_run(started)
        # 5. wait, then report
        if wait_s is not None and report.queued:
            _wait(store, ledger, items, chosen, wait_s, report)
        report.finished_at = time.time()
        report.report_uri = write_report(settings, schedule, report)
        return report
    finally:
        ledger.release()


def _list(schedule: Schedule, settings: Settings) -> list[SourceItem]:
    try:
        return expand_sources([schedule.source], settings)
    except SchemaError as exc:
        if "no images found" in str(exc):
            return []
        raise


def _refresh(
    store: JobStore, ledger: Ledger, entries: dict[str, Entry], items: Sequence[SourceItem]
) -> dict[str, Entry]:
    """Settle pending entries whose jobs finished; returns the entries, updated."""
    by_uri = {i.uri: i for i in items}
    pending = {uri: e for uri, e in entries.items() if e.state == PENDING}
    settled: list[tuple[str, Entry]] = []
    for batch in {e.batch for e in pending.values()}:
        ids = {source: job_id for job_id, source in store.batch_members(batch).items()}
        for uri, entry in pending.items():
            job_id = ids.get(by_uri[uri].source) if entry.batch == batch else None
            record = store.get(job_id) if job_id else None
            if record is None:  # never queued (a run died first), or long expired
                settled.append((uri, Entry(entry.fp, entry.batch, PENDING, MISSING, entry.at)))
                continue
            if record.state in ACTIVE:
                continue
            if record.state is JobState.SUCCEEDED:
                settled.append((uri, Entry(entry.fp, batch, SUCCEEDED, at=time.time())))
            else:
                why = f"{record.error_code or record.state}: {record.error_message or ''}"
                settled.append((uri, Entry(entry.fp, batch, FAILED, why.strip(), time.time())))
    ledger.record((uri, e) for uri, e in settled if e.state != PENDING)
    return {**entries, **dict(settled)}


def _choose(
    schedule: Schedule,
    items: Sequence[SourceItem],
    prints: dict[str, str],
    entries: dict[str, Entry],
    report: RunReport,
    retry_failed: bool,
) -> list[SourceItem]:
    chosen: list[SourceItem] = []
    for item in items:
        entry = entries.get(item.uri)
        same = entry is not None and entry.fp == prints.get(item.uri)
        if same and entry is not None and entry.state == SUCCEEDED:
            report.skip("already restored")
        elif same and entry is not None and entry.state == FAILED and not retry_failed:
            report.failed.append(
                {"source": item.source, "reason": entry.error or "failed", "run": "earlier"}
            )
            report.skip("failed earlier")
        elif same and entry is not None and entry.state == PENDING and entry.error != MISSING:
            report.skip("in progress")
        elif len(chosen) >= schedule.max_per_run:
            report.skip("over max_per_run")
        else:
            chosen.append(item)
    return chosen


def _queue(
    settings: Settings,
    redis: Redis,
    schedule: Schedule,
    ledger: Ledger,
    chosen: Sequence[SourceItem],
    prints: dict[str, str],
    entries: dict[str, Entry],
    batch: str,
    report: RunReport,
) -> None:
    # a pending entry whose job vanished (the run died before queuing) keeps its batch
    groups: dict[str, list[SourceItem]] = {}
    for item in chosen:
        old = entries.get(item.uri)
        keep = old is not None and old.state == PENDING and old.fp == prints.get(item.uri)
        groups.setdefault(old.batch if keep and old else batch, []).append(item)
    now = time.time()
    ledger.record(
        (item.uri, Entry(prints.get(item.uri, ""), name, PENDING, at=now))
        for name, group in groups.items()
        for item in group
    )
    for name, group in groups.items():
        handle = submit_batch(
            settings, redis, group, schedule.recipe, mode=Lane.FINAL,
            priority=schedule.priority, out=schedule.out, batch=name,
            output_spec=schedule.output,
        )  # fmt: skip
        report.queued += handle.report.queued
        report.queued_sources += [item.source for item in group]
        for state, count in handle.report.skipped.items():
            report.skipped[f"job already {state}"] = count


def _wait(
    store: JobStore,
    ledger: Ledger,
    items: Sequence[SourceItem],
    chosen: Sequence[SourceItem],
    wait_s: float,
    report: RunReport,
) -> None:
    deadline = time.monotonic() + wait_s
    uris = [i.uri for i in chosen]
    while True:
        entries = _refresh(store, ledger, ledger.entries(uris), items)
        settled = [e for e in entries.values() if e.state != PENDING]
        if len(settled) == len(uris) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    report.waited = True
    by_uri = {i.uri: i for i in chosen}
    for uri, entry in entries.items():
        if entry.state == SUCCEEDED:
            report.succeeded += 1
        elif entry.state == FAILED:
            reason = entry.error or "failed"
            report.failed.append({"source": by_uri[uri].source, "reason": reason, "run": "this"})


def write_report(settings: Settings, schedule: Schedule, report: RunReport) -> str:
    """Store the report under `<out>/_reports/<schedule>/<run>.json`; returns its URI."""
    from storage import open_location

    storage, prefix = open_location(schedule.out, settings)
    key = f"{prefix}_reports/{schedule.name}/{report.run}.json"
    return storage.put(key, report.to_json().encode(), "application/json")
