"""Scheduled restorations, read from a YAML file.

schedules:
  - name: nightly-scans
    source: s3://archive/scans/        # or a folder
    out: s3://archive/restored/        # reports land under <out>/_reports/<name>/
    recipe: recipes/restore.yaml       # a recipe file, or inline {steps: [...]}
    cron: "0 2 * * *"                  # or: interval: 6h  (s, m, h, d)
    priority: 8                        # low: interactive work goes first
    max_per_run: 500
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jobs.errors import ConfigError, DarkroomError
from jobs.schema import OutputSpec, Recipe
from jobs.yamlfile import load_file

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float) -> float:
    """`90`, `90s`, `15m`, `6h`, `1d` -> seconds.

    Raises:
        ValueError: `value` is not a number with an optional s, m, h or d.
    """
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30m, 6h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Schedule(BaseModel):
    """One named restoration: where scans are, where results go, how and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    source: str
    out: str
    recipe: Recipe
    cron: str | None = None
    interval_s: float | None = Field(None, alias="interval", gt=0)
    priority: int = Field(8, ge=0, le=9)
    max_per_run: int = Field(1000, ge=1)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("interval_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"{value!r} is not a cron expression (m h dom mon dow)")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.cron is None) == (self.interval_s is None):
            raise ValueError(f"schedule {self.name}: give exactly one of cron or interval")
        return self

    def next_due(self, last_run: float) -> float:
        """When the schedule fires next after a run (or a start) at `last_run`."""
        if self.interval_s is not None:
            return last_run + self.interval_s
        from datetime import UTC, datetime

        from croniter import croniter

        assert self.cron is not None
        start = datetime.fromtimestamp(last_run, UTC)
        return float(croniter(self.cron, start).get_next(float))

    @property
    def trigger(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {self.interval_s:g} s"


def load_schedules(path: Path) -> dict[str, Schedule]:
    """Schedules by name; recipe files are read relative to the schedule file.

    Raises:
        ConfigError: the file cannot be read or parsed, a schedule is invalid, or two
            schedules share a name.
    """
    data = load_file(path, ConfigError)
    rows = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: expected 'schedules:' with a list of schedules")
    schedules: dict[str, Schedule] = {}
    for i, row in enumerate(rows):
        schedule = _schedule(path, i, row)
        if schedule.name in schedules:
            raise ConfigError(f"{path}: schedule {schedule.name!r} is defined twice")
        schedules[schedule.name] = schedule
    return schedules


def _schedule(path: Path, index: int, row: Any) -> Schedule:
    where = f"{path}: schedule {index + 1}"
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected a mapping")
    where = f"{path}: schedule {row.get('name', index + 1)!r}"
    try:
        recipe, output = _recipe(path, row.get("recipe"))
        fields = {**row, "recipe": recipe, "output": {**output, **(row.get("output") or {})}}
        return Schedule.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'schedule'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
    except DarkroomError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _recipe(path: Path, raw: Any) -> tuple[Recipe, dict[str, Any]]:
    from producer.recipes import load_recipe

    if isinstance(raw, str):
        loaded = load_recipe(path.parent / raw)
        return loaded.recipe, dict(loaded.output)
    if isinstance(raw, dict):
        return Recipe.model_validate(raw), {}
    raise ConfigError("recipe: give a recipe file or an inline {steps: [...]}")
