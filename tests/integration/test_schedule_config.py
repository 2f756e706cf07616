"""Schedule files: triggers, durations and mistakes a person makes in them.

(Pure logic; it lives beside the schedule's integration tests that own this area.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.errors import ConfigError
from producer.schedule import due
from producer.schedule_config import load_schedules, parse_duration

pytestmark = pytest.mark.integration

BASE = "schedules:\n  - name: scans\n    source: ./in\n    out: ./out\n" \
       "    recipe: {steps: [{auto_levels: {}}]}\n"  # fmt: skip


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(BASE + extra)
    return path


def test_durations_read_as_a_person_writes_them() -> None:
    assert [parse_duration(v) for v in ("90", "90s", "15m", "6h", "1d", 30)] == [
        90, 90, 900, 21600, 86400, 30
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_a_cron_schedule_fires_at_its_next_slot(tmp_path: Path) -> None:
    nightly = load_schedules(write(tmp_path, "    cron: '0 2 * * *'\n"))["scans"]
    start = datetime(2025, 3, 1, 13, 0, tzinfo=UTC).timestamp()
    assert nightly.next_due(start) == datetime(2025, 3, 2, 2, 0, tzinfo=UTC).timestamp()
    assert not due(nightly, None, start, start + 3600)
    assert due(nightly, None, start, start + 14 * 3600)
    assert nightly.priority == 8  # low by default: interactive work first


def test_an_interval_schedule_runs_first_then_waits(tmp_path: Path) -> None:
    hourly = load_schedules(write(tmp_path, "    interval: 1h\n"))["scans"]
    assert due(hourly, None, 0, 10)
    assert not due(hourly, 1000.0, 0, 1000 + 3599)
    assert due(hourly, 1000.0, 0, 1000 + 3600)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "exactly one of cron or interval"),
        ("    cron: '0 2 * * *'\n    interval: 1h\n", "exactly one of cron or interval"),
        ("    cron: 'at two'\n", "not a cron expression"),
        ("    interval: 1h\n    priority: 12\n", "priority"),
        ("    interval: 1h\n    colour: blue\n", "colour"),
    ],
)
def test_mistakes_name_the_schedule_and_the_problem(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_schedules(write(tmp_path, extra))
    assert "'scans'" in str(caught.value)


def test_an_unknown_op_in_the_recipe_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(BASE.replace("auto_levels", "sparkle") + "    interval: 1h\n")
    with pytest.raises(ConfigError, match="sparkle"):
        load_schedules(path)
