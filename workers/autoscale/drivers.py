"""Drivers apply a decision: a Kubernetes Deployment's scale, a compose service's, or nothing.

Each driver builds its request as plain data first (`scale_request`, `scale_command`),
so what it would send is testable without a cluster or a container engine.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jobs.errors import ConfigError, DarkroomError
from workers.autoscale.pools import Pool


class ScaleFailed(DarkroomError):
    """The platform refused or could not be asked to scale a pool."""


class Driver(Protocol):
    name: str

    def current(self, pool: Pool) -> int | None:
        """Replicas the platform runs or is starting for `pool`; None if unknown."""

    def scale(self, pool: Pool, replicas: int) -> None:
        """Ask the platform for `replicas` of `pool`."""


@dataclass
class DryRunDriver:
    """Changes nothing; remembers what it was told, starting from the live workers."""

    name: str = "dry-run"
    replicas: dict[str, int] = field(default_factory=dict)

    def current(self, pool: Pool) -> int | None:
        return self.replicas.get(pool.queue)

    def scale(self, pool: Pool, replicas: int) -> None:
        self.replicas[pool.queue] = replicas


@dataclass(frozen=True)
class ScaleRequest:
    """The arguments of `AppsV1Api.patch_namespaced_deployment_scale`."""

    name: str
    namespace: str
    body: dict[str, Any]


class KubernetesDriver:
    """Scales Deployments through the `kubernetes` client (imported only when used)."""

    name = "k8s"

    def __init__(self, api: Any = None, *, in_cluster: bool | None = None) -> None:
        self._api = api
        self._in_cluster = in_cluster

    @staticmethod
    def scale_request(pool: Pool, replicas: int) -> ScaleRequest:
        target = _k8s_target(pool)
        return ScaleRequest(target.deployment, target.namespace, {"spec": {"replicas": replicas}})

    def current(self, pool: Pool) -> int | None:
        """Replicas the Deployment has now (its scale's `spec.replicas`).

        Raises:
            ScaleFailed: the Kubernetes API refused or could not be reached.
        """
        target = _k8s_target(pool)
        try:
            scale = self.api.read_namespaced_deployment_scale(target.deployment, target.namespace)
        except Exception as exc:  # ApiException, or the cluster is unreachable
            raise ScaleFailed(f"reading {target.namespace}/{target.deployment}: {exc}") from exc
        return int(scale.spec.replicas or 0)

    def scale(self, pool: Pool, replicas: int) -> None:
        """Set the Deployment's scale to `replicas`.

        Raises:
            ScaleFailed: the Kubernetes API refused or could not be reached.
        """
        request = self.scale_request(pool, replicas)
        try:
            self.api.patch_namespaced_deployment_scale(
                name=request.name, namespace=request.namespace, body=request.body
            )
        except Exception as exc:
            raise ScaleFailed(f"scaling {request.namespace}/{request.name}: {exc}") from exc

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = _apps_api(self._in_cluster)
        return self._api


def _apps_api(in_cluster: bool | None) -> Any:
    try:
        from kubernetes import client, config  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError("the k8s driver needs the kubernetes package") from None
    if in_cluster is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    elif in_cluster:
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.AppsV1Api()


def _k8s_target(pool: Pool) -> Any:
    if pool.k8s is None:
        raise ConfigError(f"pool {pool.queue} has no k8s: block (deployment, namespace)")
    return pool.k8s


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=300, check=False)


class ComposeDriver:
    """Scales docker compose services with `docker compose up -d --scale svc=N`."""

    name = "compose"

    def __init__(
        self,
        compose_file: Path | None = None,
        project: str | None = None,
        runner: Runner = _run,
        docker: str = "docker",
    ) -> None:
        self.compose_file = compose_file
        self.project = project
        self.runner = runner
        self.docker = docker

    def _base(self) -> list[str]:
        command = [self.docker, "compose"]
        if self.compose_file is not None:
            command += ["-f", str(self.compose_file)]
        if self.project:
            command += ["-p", self.project]
        return command

    def scale_command(self, pool: Pool, replicas: int) -> list[str]:
        service = _compose_service(pool)
        # --no-recreate: replicas already running keep their job; --no-deps: only this one
        return [
            *self._base(),
            *("up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={replicas}"),
            service,
        ]

    def current_command(self, pool: Pool) -> list[str]:
        return [*self._base(), "ps", "--quiet", "--status", "running", _compose_service(pool)]

    def current(self, pool: Pool) -> int | None:
        done = self._call(self.current_command(pool))
        return sum(1 for line in done.stdout.splitlines() if line.strip())

    def scale(self, pool: Pool, replicas: int) -> None:
        self._call(self.scale_command(pool, replicas))

    def _call(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            done = self.runner(command)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ScaleFailed(f"{' '.join(command)}: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:]
            raise ScaleFailed(
                f"{' '.join(command)} exited {done.returncode}: {' '.join(tail) or 'no output'}"
            )
        return done


def _compose_service(pool: Pool) -> str:
    if pool.compose is None:
        raise ConfigError(f"pool {pool.queue} has no compose: block (service)")
    return pool.compose.service
