"""Structured JSON logs, with the job id on every line written while a task runs.

`configure(level)` sends JSON lines to stderr (one object per record: time, level,
logger, message, job, task, plus any `extra=`). The job id lives in a context
variable: `bound_job(job_id)` sets it for a block; `install(app)` sets it around every
task (`task_prerun` / `task_postrun`) and re-applies the format after Celery set up its
own loggers (`after_setup_logger`, `after_setup_task_logger`). Threads and prefork
children each see their own job.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)
current_task: contextvars.ContextVar[str | None] = contextvars.ContextVar("task", default=None)

# Attributes every LogRecord has; anything else came from `extra=` and is kept.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "job", "task", "taskName",
}  # fmt: skip


class JobFilter(logging.Filter):
    """Stamps each record with the job and task of the current context."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = current_job.get()
        record.task = current_task.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never raises on odd `extra=` values."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("job", "task"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _iso(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobFilter())
    return handler


def configure(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Make the root logger write JSON lines carrying the current job id."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old.formatter, JsonFormatter):
            root.removeHandler(old)
    root.addHandler(json_handler(stream))
    root.setLevel(level if isinstance(level, int) else level.upper())


def apply_json(logger: logging.Logger) -> None:
    """Switch every handler of `logger` to JSON with the job id (Celery's own included)."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
        if not any(isinstance(f, JobFilter) for f in handler.filters):
            handler.addFilter(JobFilter())


@contextmanager
def bound_job(job_id: str | None, task_id: str | None = None) -> Iterator[None]:
    """Every line logged inside the block carries `job_id`."""
    job_token = current_job.set(job_id)
    task_token = current_task.set(task_id)
    try:
        yield
    finally:
        current_job.reset(job_token)
        current_task.reset(task_token)


def install(app: Any, level: int | str = logging.INFO) -> None:
    """Hook JSON logging and the per-task job id into a Celery app's signals."""
    from celery import signals

    configure(level)
    tokens: dict[str, tuple[contextvars.Token[str | None], contextvars.Token[str | None]]] = {}

    @signals.after_setup_logger.connect(weak=False)
    @signals.after_setup_task_logger.connect(weak=False)
    def _reformat(logger: logging.Logger | None = None, **_: Any) -> None:
        if logger is not None:
            apply_json(logger)

    @signals.task_prerun.connect(weak=False)
    def _bind(task_id: str = "", kwargs: dict[str, Any] | None = None, **_: Any) -> None:
        # darkroom's render messages use the job id as the task id
        job = (kwargs or {}).get("job")
        job_id = job.get("id") if isinstance(job, dict) else None
        tokens[task_id] = (current_job.set(job_id or task_id), current_task.set(task_id))

    @signals.task_postrun.connect(weak=False)
    def _unbind(task_id: str = "", **_: Any) -> None:
        held = tokens.pop(task_id, None)
        try:
            if held is not None:
                current_job.reset(held[0])
                current_task.reset(held[1])
        except ValueError:  # set in another context: clear rather than leak the id
            current_job.set(None)
            current_task.set(None)
