"""Batches: submit many images with one recipe, watch them finish, read the results.

The CLI, the demo and the HTTP API all go through here. A batch's name and its jobs'
ids are derived from what was asked (sources, recipe, mode, output), so submitting
the same thing again maps onto the same jobs, and `JobStore.enqueue` skips those
already queued, running or done: that is how an interrupted batch resumes.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.errors import SchemaError
from jobs.schema import Job, Lane, OutputSpec, Recipe
from jobs.tiers import queue_name, route
from producer.overflow import enabled
from producer.results import ResultRow, batch_results
from producer.sources import SourceItem, destination_uri
from transport.keyspace import Keyspace
from transport.store import EnqueueReport, JobStore, Submission

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings

__all__ = [
    "BatchHandle",
    "BatchProgress",
    "JobOptions",
    "ResultRow",
    "batch_results",
    "derive_batch_name",
    "job_id_for",
    "store_for",
    "submit_batch",
    "wait_for_batch",
]

# Fixed namespace, so job ids are the same on every machine and every run.
JOB_NAMESPACE = uuid.UUID("6f1c8a0e-3d2b-5e47-9a61-d4c0b7e2f915")
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHUNK = 2000


@dataclass(frozen=True)
class BatchHandle:
    """What one submission did: where the jobs went and how many were new."""

    name: str
    tier: str
    queue: str
    out: str
    submitted: int
    report: EnqueueReport
    elapsed_s: float

    @property
    def skipped(self) -> int:
        return sum(self.report.skipped.values())

    @property
    def rate(self) -> float:
        """Jobs handled per second by this submission."""
        return self.submitted / self.elapsed_s if self.elapsed_s > 0 else float("inf")


@dataclass(frozen=True)
class JobOptions:
    """Job-level options every job of a batch gets (as the HTTP API takes them per job).

    seed: for generative ops (None: a random one per job); part of the job's identity,
        so the same batch with another seed renders again.
    webhook: URL POSTed when each job finishes.
    tenant: who the jobs belong to.
    cancel_after_s: jobs not started within this many seconds of submission are canceled.
    """

    seed: int | None = None
    webhook: str | None = None
    tenant: str | None = None
    cancel_after_s: float | None = None

    def job_fields(self, now: float) -> dict[str, Any]:
        fields: dict[str, Any] = {"seed": self.seed, "webhook": self.webhook}
        fields.update(tenant=self.tenant)
        if self.cancel_after_s is not None:
            fields["cancel_after"] = now + self.cancel_after_s
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class BatchProgress:
    """A batch's counters, as `JobStore.batch_counts` keeps them."""

    total: int = 0
    queued: int = 0
    running: int = 0
    retrying: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> BatchProgress:
        return cls(**{name: max(0, int(counts.get(name, 0))) for name in cls.__annotations__})

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.canceled

    @property
    def done(self) -> bool:
        return self.total > 0 and self.finished >= self.total

    @property
    def percent(self) -> float:
        return 100.0 * self.finished / self.total if self.total else 0.0

    @property
    def all_succeeded(self) -> bool:
        return self.done and self.succeeded == self.total


def store_for(settings: Settings, redis: Redis) -> JobStore:
    """The job store under the configured key prefix and TTL."""
    return JobStore(redis, Keyspace(settings.key_prefix), ttl_s=settings.job_ttl_s)


def check_batch_name(name: str) -> str:
    """`name` if it can name a batch (it becomes part of report file names)."""
    if not BATCH_NAME.match(name):
        raise SchemaError(
            f"batch name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _slug(text: str) -> str:
    tail = text.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9]+", "-", tail.lower()).strip("-")[:40]


def derive_batch_name(
    sources: Sequence[str],
    recipe: Recipe,
    mode: Lane,
    out: str,
    output: OutputSpec,
    *,
    seed: int | None = None,
) -> str:
    """A readable name that is the same whenever the same thing is submitted again."""
    parts: list[object] = [
        list(sources),
        recipe.digest(),
        Lane(mode).value,
        out,
        _spec_identity(output),
    ]
    if seed is not None:
        parts.append({"seed": seed})
    fingerprint = _digest(*parts)
    slug = _slug(recipe.name or "") or (_slug(sources[0]) if sources else "") or "batch"
    return f"{slug}-{fingerprint[:10]}"


def _spec_identity(output: OutputSpec) -> dict[str, object]:
    """The output spec as it names a batch; fields added later count only when set."""
    later = {"metadata", "bit_depth", "frames"}
    return output.model_dump(exclude={"key"} | {f for f in later if getattr(output, f) is None})


def job_id_for(
    batch: str,
    item: SourceItem,
    digest: str,
    mode: Lane,
    output: OutputSpec,
    seed: int | None = None,
) -> str:
    """uuid5 of everything that makes the job what it is; a re-run maps to the same id."""
    parts = [batch, item.uri, digest, Lane(mode).value, output.model_dump_json(exclude_none=True)]
    if seed is not None:  # only when given, so ids of seedless batches stay as they were
        parts.append(f"seed={seed}")
    name = "\n".join(parts)
    return uuid.uuid5(JOB_NAMESPACE, name).hex


def submit_batch(
    settings: Settings,
    redis: Redis,
    items: Iterable[SourceItem],
    recipe: Recipe,
    *,
    mode: Lane | str = Lane.FINAL,
    priority: int = 5,
    out: str | None = None,
    batch: str | None = None,
    output_spec: OutputSpec | None = None,
    on_progress: Callable[[int], object] | None = None,
    job_options: JobOptions | None = None,
) -> BatchHandle:
    """Queue one job per item on `<tier>.<lane>`; returns what was new, requeued, skipped.

    `out` is a folder or `s3://bucket/prefix` (default: `settings.output`); each output
    lands at `<out>/<item.name>.<ext>`. `batch` defaults to a name derived from the
    items, recipe, mode and output. `on_progress(n)` is called with the jobs handled.
    `job_options` (seed, webhook, tenant, cancel_after) apply to every job.
    """
    started = time.perf_counter()
    lane = Lane(mode)
    tier = enabled(route(recipe, settings.tiers()), settings)
    queue = queue_name(tier, lane)
    items = list(items)
    spec = (output_spec or OutputSpec()).model_copy(
        update={"uri": destination_uri(out or settings.output)}
    )
    spec = OutputSpec.model_validate(spec.model_dump())
    options = job_options or JobOptions()
    name = check_batch_name(
        batch
        or derive_batch_name(
            [i.uri for i in items], recipe, lane, spec.uri or "", spec, seed=options.seed
        )
    )
    report = EnqueueReport()
    store = store_for(settings, redis)
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        subs = [
            _submission(item, recipe, lane, priority, spec, name, queue, options) for item in chunk
        ]
        _merge(report, store.enqueue(subs, chunk=CHUNK))
        if on_progress is not None:
            on_progress(len(chunk))
    elapsed = time.perf_counter() - started
    return BatchHandle(name, tier.name, queue, spec.uri or "", len(items), report, elapsed)


def _submission(
    item: SourceItem,
    recipe: Recipe,
    lane: Lane,
    priority: int,
    spec: OutputSpec,
    batch: str,
    queue: str,
    options: JobOptions,
) -> Submission:
    output = spec.model_copy(update={"key": item.name})
    job = Job(
        id=job_id_for(batch, item, recipe.digest(), lane, output, options.seed),
        input=item.uri,
        recipe=recipe,
        mode=lane,
        priority=priority,
        output=output,
        batch=batch,
        **options.job_fields(time.time()),
    )
    return Submission(job=job, queue=queue, source=item.source)


def _merge(total: EnqueueReport, part: EnqueueReport) -> None:
    total.new += part.new
    total.requeued += part.requeued
    for state, count in part.skipped.items():
        total.skipped[state] = total.skipped.get(state, 0) + count


def wait_for_batch(
    store: JobStore,
    name: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_update: Callable[[BatchProgress], None] | None = None,
) -> BatchProgress:
    """Poll the batch's counters until every job finished or `timeout_s` passed.

    Returns the last progress seen; `.done` says whether the batch finished.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        progress = BatchProgress.from_counts(store.batch_counts(name))
        if on_update is not None:
            on_update(progress)
        if progress.done or progress.total == 0:
            return progress
        if deadline is not None and time.monotonic() >= deadline:
            return progress
        pause = poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)
