"""Worker pools the autoscaler sizes, read from a YAML file (`deploy/autoscale/pools.yaml`).

A pool is the set of replicas consuming one queue `<tier>.<lane>`: a Kubernetes
Deployment, or a docker compose service. Its targets depend on the lane: a preview
pool keeps a warm minimum and holds a wait target of a few hundred milliseconds; a
final pool drains its backlog within a configurable time and may scale to zero after
an idle period.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobs.errors import ConfigError
from jobs.schema import Lane
from jobs.yamlfile import load_file


class KubernetesTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str
    namespace: str = "darkroom"


class ComposeTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str


class Pool(BaseModel):
    """One queue's replicas, their bounds and targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,30}\.(preview|final)$")
    min_replicas: int = Field(0, ge=0)
    max_replicas: int = Field(ge=0)
    target_wait_s: float = Field(0.2, gt=0, description="preview: wait a new job may see")
    drain_time_s: float = Field(600.0, gt=0, description="final: drain the backlog within")
    target_utilization: float | None = Field(
        None, gt=0, le=1, description="busy share of replicas; default 0.6 preview, 0.9 final"
    )
    service_time_s: float = Field(
        5.0, gt=0, description="seconds per job per replica until one is measured"
    )
    concurrency: int = Field(1, ge=1, description="jobs one replica runs at once")
    idle_s: float = Field(300.0, ge=0, description="final: idle this long before zero")
    scale_down_delay_s: float = Field(
        120.0, ge=0, description="scale down only to the highest wish of this window"
    )
    tolerance: float = Field(0.1, ge=0, lt=1, description="ignore smaller relative shrinks")
    load_smoothing: float = Field(
        0.7, gt=0, le=1, description="weight of the newest in-flight mean (1: no smoothing)"
    )
    k8s: KubernetesTarget | None = None
    compose: ComposeTarget | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Pool:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"{self.queue}: max_replicas is below min_replicas")
        if self.lane is Lane.PREVIEW and self.min_replicas < 1:
            # A preview cannot wait for a replica to start and still meet its target.
            raise ValueError(f"{self.queue}: a preview pool needs min_replicas >= 1 (warm)")
        return self

    @property
    def name(self) -> str:
        return self.queue

    @property
    def tier(self) -> str:
        return self.queue.split(".", 1)[0]

    @property
    def lane(self) -> Lane:
        return Lane(self.queue.split(".", 1)[1])

    @property
    def target_s(self) -> float:
        """How soon the backlog must be gone: the wait target or the drain time."""
        return self.target_wait_s if self.lane is Lane.PREVIEW else self.drain_time_s

    @property
    def utilization(self) -> float:
        if self.target_utilization is not None:
            return self.target_utilization
        return 0.6 if self.lane is Lane.PREVIEW else 0.9

    @property
    def scales_to_zero(self) -> bool:
        return self.lane is Lane.FINAL and self.min_replicas == 0


class PoolConfig(BaseModel):
    """Every pool, and how often the controller looks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: float = Field(15.0, gt=0)
    pools: tuple[Pool, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PoolConfig:
        queues = [p.queue for p in self.pools]
        dupes = sorted({q for q in queues if queues.count(q) > 1})
        if dupes:
            raise ValueError(f"queue(s) listed twice: {', '.join(dupes)}")
        return self

    def pool(self, queue: str) -> Pool:
        """The pool that consumes `queue` (`<tier>.<lane>`).

        Raises:
            ConfigError: no pool serves `queue`.
        """
        for pool in self.pools:
            if pool.queue == queue:
                return pool
        raise ConfigError(f"no pool serves {queue!r}")


def parse_pools(data: Any, origin: str = "pools") -> PoolConfig:
    """Validate already-parsed pool configuration; any problem is one `ConfigError`.

    Raises:
        ConfigError: every problem found, with its place in the file.
    """
    try:
        return PoolConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{origin}: {problems}") from None


def load_pools(path: Path) -> PoolConfig:
    """Read a pool file (YAML or JSON).

    Raises:
        ConfigError: the file cannot be read, does not parse, or a pool is invalid.
    """
    return parse_pools(load_file(path, ConfigError), str(path))
