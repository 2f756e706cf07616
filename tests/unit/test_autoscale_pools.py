"""Pool files: the example in deploy/ loads, bad ones fail with a readable message."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import ConfigError
from jobs.tiers import LOCAL_TIERS, all_queues
from workers.autoscale.pools import load_pools, parse_pools

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "autoscale" / "pools.yaml"


def test_the_shipped_example_serves_every_queue_of_the_default_tiers() -> None:
    config = load_pools(EXAMPLE)
    assert sorted(p.queue for p in config.pools) == sorted(all_queues(LOCAL_TIERS))
    for pool in config.pools:
        assert pool.k8s is not None and pool.compose is not None
        assert pool.k8s.deployment == f"darkroom-worker-{pool.tier}-{pool.lane.value}"
        assert pool.scales_to_zero == (pool.lane.value == "final")


def test_a_preview_pool_without_a_warm_replica_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"a10\.preview.*min_replicas >= 1"):
        parse_pools({"pools": [{"queue": "a10.preview", "min_replicas": 0, "max_replicas": 2}]})


def test_bounds_and_duplicates_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_replicas is below min_replicas"):
        parse_pools({"pools": [{"queue": "cpu.final", "min_replicas": 3, "max_replicas": 2}]})
    twice = {"queue": "cpu.final", "max_replicas": 2}
    with pytest.raises(ConfigError, match=r"listed twice: cpu\.final"):
        parse_pools({"pools": [twice, twice]})


def test_a_queue_that_is_not_tier_dot_lane_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n  - queue: a10-final\n    max_replicas: 2\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_pools(path)
