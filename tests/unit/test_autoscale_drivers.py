"""What each driver sends: a Deployment scale patch, a compose command, or nothing."""

from __future__ import annotations

import inspect
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

from jobs.errors import ConfigError
from workers.autoscale.controller import QueueSample
from workers.autoscale.drivers import ComposeDriver, DryRunDriver, KubernetesDriver, ScaleFailed
from workers.autoscale.loop import Autoscaler
from workers.autoscale.pools import Pool, parse_pools

POOL = Pool(
    queue="a10.final", max_replicas=8,
    k8s={"deployment": "darkroom-worker-a10-final", "namespace": "render"},
    compose={"service": "worker-a10-final"},
)  # fmt: skip


def test_the_k8s_request_patches_the_deployment_scale_subresource() -> None:
    request = KubernetesDriver.scale_request(POOL, 5)
    assert (request.name, request.namespace) == ("darkroom-worker-a10-final", "render")
    assert request.body == {"spec": {"replicas": 5}}


def test_the_k8s_request_matches_the_real_client_api() -> None:
    kubernetes = pytest.importorskip("kubernetes")
    method = kubernetes.client.AppsV1Api.patch_namespaced_deployment_scale
    assert {"name", "namespace", "body"} <= set(inspect.signature(method).parameters)
    body = kubernetes.client.ApiClient().sanitize_for_serialization(
        KubernetesDriver.scale_request(POOL, 3).body
    )
    assert body == {"spec": {"replicas": 3}}


class RecordingApps:
    """Stands in for AppsV1Api where no cluster exists; records the calls it gets."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.patches: list[dict[str, Any]] = []

    def read_namespaced_deployment_scale(self, name: str, namespace: str) -> Any:
        spec = type("Spec", (), {"replicas": self.replicas})
        return type("Scale", (), {"spec": spec})

    def patch_namespaced_deployment_scale(self, **kwargs: Any) -> None:
        self.patches.append(kwargs)


def test_the_k8s_driver_reads_and_patches_through_the_api() -> None:
    api = RecordingApps(replicas=2)
    driver = KubernetesDriver(api)
    assert driver.current(POOL) == 2
    driver.scale(POOL, 6)
    assert api.patches == [
        {"name": "darkroom-worker-a10-final", "namespace": "render",
         "body": {"spec": {"replicas": 6}}}
    ]  # fmt: skip


def test_a_pool_without_a_k8s_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no k8s: block"):
        KubernetesDriver.scale_request(Pool(queue="cpu.final", max_replicas=1), 1)


def test_the_compose_command_scales_one_service_without_recreating() -> None:
    driver = ComposeDriver()
    command = driver.scale_command(POOL, 4)
    assert command[:3] == ["docker", "compose", "up"]
    assert command[command.index("--scale") + 1] == "worker-a10-final=4"
    assert "-d" in command and "--no-recreate" in command
    assert command[-1] == "worker-a10-final"


class Recorder:
    def __init__(self, stdout: str = "", returncode: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.stdout, self.returncode = stdout, returncode

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(command))
        return subprocess.CompletedProcess(command, self.returncode, self.stdout, "no such service")


def test_the_compose_driver_counts_running_containers_and_names_the_project() -> None:
    runner = Recorder(stdout="c0ffee\nbeef01\n")
    driver = ComposeDriver(project="darkroom", runner=runner)
    assert driver.current(POOL) == 2
    assert runner.commands[0][:4] == ["docker", "compose", "-p", "darkroom"]


def test_a_failing_compose_command_says_what_failed() -> None:
    driver = ComposeDriver(runner=Recorder(returncode=1))
    with pytest.raises(ScaleFailed, match="exited 1: no such service"):
        driver.scale(POOL, 2)


def test_an_autoscaler_tick_applies_decisions_through_its_driver() -> None:
    config = parse_pools({"pools": [
        {"queue": "a10.final", "max_replicas": 8, "service_time_s": 6, "drain_time_s": 600},
        {"queue": "a10.preview", "min_replicas": 1, "max_replicas": 4},
    ]})  # fmt: skip

    def sampler(queues: list[str], now: float) -> dict[str, QueueSample]:
        depth = {"a10.final": 300, "a10.preview": 0}
        return {q: QueueSample(q, depth[q], workers=1) for q in queues}

    driver = DryRunDriver()
    decisions = Autoscaler(config, sampler, driver, clock=lambda: 0.0).step()
    assert [(d.queue, d.current, d.desired) for d in decisions] == [
        ("a10.final", 1, 3), ("a10.preview", 1, 1)
    ]  # fmt: skip
    assert driver.replicas == {"a10.final": 3}
