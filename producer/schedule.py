"""`darkroom schedule list|run|serve`: scheduled restorations of scanned archives.

Own loop, not Celery beat or APScheduler: neither stops two scheduler processes running
one schedule twice; a Redis lock per schedule and a per-scan ledger do (croniter parses cron).

Schedules come from a YAML file (`--file`, or `DARKROOM_SCHEDULES`, default
`schedules.yaml`); see `producer.schedule_config` for its format. `serve` wakes every
`--tick` seconds and runs each schedule that is due; the per-schedule lock in Redis
lets several `serve` processes run side by side without running one schedule twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobs.errors import DarkroomError
from producer.schedule_config import Schedule, load_schedules
from producer.schedule_ledger import Ledger, ScheduleBusy

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings
    from producer.schedule_run import RunReport

FILE_OPTION = click.option(
    "--file", "schedules_file", type=click.Path(path_type=Path, dir_okay=False),
    envvar="DARKROOM_SCHEDULES", default=Path("schedules.yaml"), show_default=True,
    help="schedule file (YAML)",
)  # fmt: skip


def _context() -> tuple[Settings, Redis]:
    from jobs.settings import load_settings
    from transport.embedded import connect

    settings = load_settings()
    return settings, connect(settings)


def due(schedule: Schedule, last_run: float | None, started_at: float, now: float) -> bool:
    """Whether `schedule` should run at `now`; a never-run one waits for its first slot."""
    if last_run is None and schedule.interval_s is not None:
        return True
    return schedule.next_due(last_run if last_run is not None else started_at) <= now


def serve_loop(
    settings: Settings,
    redis: Redis,
    schedules: dict[str, Schedule],
    *,
    tick_s: float = 30.0,
    max_ticks: int | None = None,
    stop: threading.Event | None = None,
    on_run: Callable[[RunReport], None] | None = None,
) -> int:
    """Run due schedules every `tick_s` until `stop` or `max_ticks`; returns runs made."""
    from producer.schedule_run import run_schedule

    stop = stop or threading.Event()
    started_at, ticks, runs = time.time(), 0, 0
    while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
        for schedule in schedules.values():
            last = Ledger(redis, settings.key_prefix, schedule.name).last_run()
            if not due(schedule, last, started_at, time.time()):
                continue
            try:
                report = run_schedule(settings, redis, schedule)
            except ScheduleBusy:
                continue
            runs += 1
            if on_run is not None:
                on_run(report)
        ticks += 1
        if max_ticks is None or ticks < max_ticks:
            stop.wait(tick_s)
    return runs


def _summary(report: RunReport) -> str:
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
    line = (
        f"{report.schedule} {report.run}: found {report.found}, queued {report.queued}, "
        f"skipped {skipped}"
    )
    if report.waited:
        failed_now = sum(1 for f in report.failed if f.get("run") == "this")
        line += f"; succeeded {report.succeeded}, failed {failed_now}"
    return f"{line}\nreport: {report.report_uri}"


@click.group()
def schedule() -> None:
    """List and run scheduled restorations."""


@schedule.command("list")
@FILE_OPTION
def list_schedules(schedules_file: Path) -> None:
    """Show each schedule, its trigger, last run and ledger size."""
    try:
        schedules = load_schedules(schedules_file)
        settings, redis = _context()
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
    for item in schedules.values():
        ledger = Ledger(redis, settings.key_prefix, item.name)
        last = ledger.last_run()
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(last)) if last else "never"
        click.echo(
            f"{item.name:<24} {item.trigger:<20} priority {item.priority}  last run {when}  "
            f"seen {ledger.size()}  {item.source} -> {item.out}"
        )


@schedule.command("run")
@click.argument("name")
@FILE_OPTION
@click.option("--wait", is_flag=True, help="wait for the run's jobs and report their outcome")
@click.option("--timeout", type=float, default=3600.0, show_default=True,
              help="seconds --wait waits at most")  # fmt: skip
@click.option("--retry-failed", is_flag=True, help="queue scans whose job failed before")
@click.option("--json", "as_json", is_flag=True, help="print the run report as JSON")
def run(
    name: str, schedules_file: Path, wait: bool, timeout: float, retry_failed: bool, as_json: bool
) -> None:
    """Run schedule NAME now."""
    from producer.schedule_run import run_schedule

    try:
        schedules = load_schedules(schedules_file)
        if name not in schedules:
            known = ", ".join(sorted(schedules))
            raise click.ClickException(f"no schedule {name!r} in {schedules_file}; known: {known}")
        settings, redis = _context()
        report = run_schedule(
            settings, redis, schedules[name], wait_s=timeout if wait else None,
            retry_failed=retry_failed,
        )  # fmt: skip
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.to_json() if as_json else _summary(report))
    if wait and any(f.get("run") == "this" for f in report.failed):
        raise SystemExit(1)


@schedule.command("serve")
@FILE_OPTION
@click.option("--tick", type=click.FloatRange(min=0.01), default=30.0, show_default=True,
              help="seconds between looks at the schedules")  # fmt: skip
@click.option(
    "--max-ticks",
    type=click.IntRange(min=1),
    default=None,
    help="stop after this many ticks (default: run until interrupted)",
)
def serve(schedules_file: Path, tick: float, max_ticks: int | None) -> None:
    """Run every schedule when it is due."""
    try:
        schedules = load_schedules(schedules_file)
        settings, redis = _context()
        serve_loop(
            settings, redis, schedules, tick_s=tick, max_ticks=max_ticks,
            on_run=lambda report: click.echo(_summary(report)),
        )  # fmt: skip
    except DarkroomError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
