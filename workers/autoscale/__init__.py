"""darkroom's own autoscaler: pools from a YAML file, a pure controller, Redis observer,
and drivers for Kubernetes and docker compose (`darkroom autoscale`).

Own code, not KEDA or the HPA: those need Kubernetes; this one also sizes docker compose
services from nothing but Redis, and estimates drain time from measured service times.

KEDA ScaledObjects (deploy/k8s/keda.yaml) are the alternative in Kubernetes;
deploy/README.md says when to use which.
"""

from workers.autoscale.controller import Controller, Decision, QueueSample, wanted_replicas
from workers.autoscale.pools import Pool, PoolConfig, load_pools, parse_pools

__all__ = [
    "Controller",
    "Decision",
    "Pool",
    "PoolConfig",
    "QueueSample",
    "load_pools",
    "parse_pools",
    "wanted_replicas",
]
