"""`darkroom worker` command lines: what `--lane both` starts, and what it refuses."""

from __future__ import annotations

from click.testing import CliRunner

from workers.cli import worker, worker_argv


def test_lane_both_with_a_prefork_pool_is_refused_with_the_way_out() -> None:
    result = CliRunner().invoke(worker, ["--tier", "cpu", "--lane", "both", "--pool", "prefork"])
    assert result.exit_code != 0
    assert "threads pool" in result.output and "--split-lanes" in result.output


def test_the_supervisor_starts_one_model_owning_child_or_two_lanes() -> None:
    one = worker_argv("a10", "both", 2, name="card", serve_both=True)
    assert "--serve-both" in one and "--split-lanes" not in one
    assert one[one.index("--lane") + 1] == "both" and one[one.index("--concurrency") + 1] == "2"
    split = worker_argv("a10", "both", name="card", split_lanes=True)
    assert "--split-lanes" in split and "--serve-both" not in split
