"""docker-compose.yml, checked offline: schema, services per queue, GPUs, ports, volumes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.tiers import LOCAL_TIERS, all_queues
from workers.autoscale.pools import load_pools

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def compose_schema_errors(document: dict[str, Any]) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    check_jsonschema = pytest.importorskip("check_jsonschema")
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_passes_the_compose_spec_schema() -> None:
    assert compose_schema_errors(COMPOSE) == []


def test_the_schema_check_catches_a_broken_file() -> None:
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["redis"]["ports"] = [{"published": "not-a-port", "bogus": 1}]
    assert compose_schema_errors(broken)


def test_every_service_has_an_image_or_a_build() -> None:
    assert all("image" in s or "build" in s for s in SERVICES.values())


def test_named_volumes_and_networks_are_declared() -> None:
    volumes, networks = set(COMPOSE["volumes"]), set(COMPOSE["networks"])
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
            else:
                assert (ROOT / source).exists(), f"{name} mounts missing file {source}"
        assert set(service.get("networks", [])) <= networks, name


def test_every_published_port_binds_loopback() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all hosts"


def test_every_queue_has_a_worker_service_named_in_the_pool_file() -> None:
    pools = load_pools(ROOT / "deploy" / "autoscale" / "pools.yaml")
    for queue in all_queues(LOCAL_TIERS):
        service = pools.pool(queue).compose
        assert service is not None and service.service in SERVICES, queue
        tier, lane = queue.split(".")
        command = SERVICES[service.service]["command"]
        assert command[:5] == ["worker", "--tier", tier, "--lane", lane]


def test_gpu_workers_reserve_a_gpu_and_cpu_workers_do_not() -> None:
    for tier in LOCAL_TIERS:
        for lane in ("preview", "final"):
            service = SERVICES[f"worker-{tier.name}-{lane}"]
            devices = (
                service.get("deploy", {}).get("resources", {}).get("reservations", {})
                .get("devices", [])
            )  # fmt: skip
            if tier.vram_gb:
                assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
                assert service["profiles"] == [tier.name]
            else:
                assert devices == [] and "profiles" not in service


def test_redis_keeps_an_append_only_file_and_s3_is_seaweedfs() -> None:
    assert "--appendonly" in SERVICES["redis"]["command"]
    assert SERVICES["s3"]["image"].startswith("chrislusf/seaweedfs")
    assert {"flower", "prometheus", "grafana", "api"} <= set(SERVICES)


def test_final_workers_get_time_to_finish_a_render_on_stop() -> None:
    assert SERVICES["worker-a10-final"]["stop_grace_period"] == "30m"
    assert SERVICES["worker-a10-preview"]["stop_grace_period"] == "60s"
