"""`darkroom status`, `darkroom queues` and `darkroom cancel`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click
from tqdm import tqdm

from producer.batch import BatchProgress, store_for
from producer.cli_common import EXIT_USAGE, Failure, echo_json, one_line_errors, settings_and_redis
from producer.queue_stats import queue_stats
from producer.report import ReportPaths, write_reports
from producer.results import ResultRow, batch_results
from transport.store import JobRecord, JobStore

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings

FAILURES_SHOWN = 10
UNSUCCESSFUL = ("failed", "canceled")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _job_lines(record: JobRecord) -> list[str]:
    lines = [f"job {record.id}: {record.state.value}"]
    rows: list[tuple[str, Any]] = [
        ("source", record.source),
        ("queue", record.queue),
        ("batch", record.batch),
        ("attempts", record.attempts),
        ("worker", record.worker),
        ("progress", f"{record.progress:.0%}" if record.progress is not None else None),
        ("output", record.output),
        ("error", f"{record.error_code}: {record.error_message}" if record.error_code else None),
        ("queued", _when(record.queued_at)),
        ("finished", _when(record.finished_at)),
    ]
    lines += [f"  {label:<9}{value}" for label, value in rows if value not in (None, "", "-")]
    if record.cancel_requested and not record.state.terminal:
        lines.append("  cancel requested: the worker stops it at its next step")
    return lines


def _batch_lines(name: str, progress: BatchProgress, failures: Sequence[ResultRow]) -> list[str]:
    counts = "  ".join(
        f"{state} {getattr(progress, state)}"
        for state in ("succeeded", "failed", "canceled", "running", "retrying", "queued")
    )
    lines = [
        f"batch {name}: {progress.finished} of {progress.total} finished "
        f"({progress.percent:.1f} %){'' if not progress.done else ', done'}",
        f"  {counts}",
    ]
    if failures:
        codes = Counter(row.error_code or row.state for row in failures)
        lines.append("  failures by code: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
        for row in failures[:FAILURES_SHOWN]:
            lines.append(f"  {row.source}  {row.error_code or row.state}  {row.error or ''}")
        if len(failures) > FAILURES_SHOWN:
            lines.append(f"  ... and {len(failures) - FAILURES_SHOWN} more (--json lists all)")
    return lines


def batch_out(settings: Settings, store: JobStore, name: str) -> str:
    """The output folder the batch's jobs were submitted with."""
    for job_id in store.batch_members(name):
        job = store.job(job_id)
        if job is not None and job.output.uri:
            return job.output.uri
    return settings.output


def write_batch_reports(
    settings: Settings, redis: Redis, name: str, out: str | None, *, quiet: bool
) -> ReportPaths:
    """The manifest and contact sheet of a batch, with a progress bar over thumbnails."""
    store = store_for(settings, redis)
    rows = batch_results(store, name)
    where = out or batch_out(settings, store, name)
    with tqdm(total=len(rows), desc="contact sheet", unit="img", disable=quiet) as bar:
        return write_reports(settings, rows, out=where, batch=name, on_card=bar.update)


def _show_batch(
    settings: Settings,
    redis: Redis,
    name: str,
    *,
    as_json: bool,
    report: bool,
    out: str | None,
    quiet: bool,
) -> None:
    store = store_for(settings, redis)
    progress = BatchProgress.from_counts(store.batch_counts(name))
    if progress.total == 0 and not store.batch_members(name):
        raise Failure(f"no batch named {name!r} (never submitted, or expired)")
    needs_rows = report or as_json or any(getattr(progress, s) for s in UNSUCCESSFUL)
    rows = batch_results(store, name) if needs_rows else []
    failures = [row for row in rows if row.state in UNSUCCESSFUL]
    paths = write_batch_reports(settings, redis, name, out, quiet=quiet) if report else None
    if as_json:
        echo_json(
            {
                "batch": name,
                "counts": progress.__dict__,
                "percent": round(progress.percent, 2),
                "done": progress.done,
                "failures": [row.to_dict() for row in failures],
                "reports": paths.__dict__ if paths else None,
            }
        )
        return
    click.echo("\n".join(_batch_lines(name, progress, failures)))
    if paths:
        click.echo(paths.describe())


@click.command()
@click.argument("job_id", required=False)
@click.option("--batch", "batch_name", help="show a batch instead of one job")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--report", is_flag=True, help="with --batch: write manifest and contact sheet")
@click.option("--out", help="with --report: write them here [default: the batch's outputs]")
@click.option("--no-progress", is_flag=True, help="no progress bar while writing the report")
@one_line_errors
def status(
    job_id: str | None,
    batch_name: str | None,
    as_json: bool,
    report: bool,
    out: str | None,
    no_progress: bool,
) -> None:
    """Show one job (JOB_ID) or a whole batch (--batch NAME)."""
    if bool(job_id) == bool(batch_name):
        raise Failure("give a JOB_ID or --batch NAME (one of them)", EXIT_USAGE)
    if (report or out) and not batch_name:
        raise Failure("--report and --out go with --batch", EXIT_USAGE)
    settings, redis = settings_and_redis()
    if batch_name:
        quiet = as_json or no_progress
        _show_batch(
            settings, redis, batch_name, as_json=as_json, report=report, out=out, quiet=quiet
        )
        return
    assert job_id is not None
    record = store_for(settings, redis).get(job_id)
    if record is None:
        raise Failure(f"no job {job_id} (never submitted, or expired)")
    if as_json:
        echo_json(record.model_dump(mode="json"))
    else:
        click.echo("\n".join(_job_lines(record)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@one_line_errors
def queues(as_json: bool) -> None:
    """Backlog, in-flight jobs and live workers for every <tier>.<lane> queue."""
    settings, redis = settings_and_redis()
    stats = queue_stats(settings, redis)
    if as_json:
        echo_json([s.to_dict() for s in stats])
        return
    click.echo(f"{'QUEUE':<16}{'DEPTH':>8}{'IN-FLIGHT':>11}{'WORKERS':>9}{'BUSY':>6}")
    for s in stats:
        click.echo(f"{s.queue:<16}{s.depth:>8}{s.in_flight:>11}{s.workers:>9}{s.busy:>6}")


def cancel_job(store: JobStore, job_id: str) -> JobRecord | None:
    """Cancel a queued job now; ask a running one to stop at its next step."""
    return store.cancel(job_id)


@click.command()
@click.argument("job_id")
@one_line_errors
def cancel(job_id: str) -> None:
    """Cancel a queued job now; ask a running one to stop at its next step."""
    settings, redis = settings_and_redis()
    record = cancel_job(store_for(settings, redis), job_id)
    if record is None:
        raise Failure(f"no job {job_id} (never submitted, or expired)")
    if record.state.value == "canceled":
        click.echo(f"job {job_id}: canceled")
    elif record.cancel_requested and not record.state.terminal:
        click.echo(
            f"job {job_id}: {record.state.value}; cancel requested, it stops at its next step"
        )
    else:
        raise Failure(f"job {job_id} is already {record.state.value}; nothing to cancel")
