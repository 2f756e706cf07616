"""Prometheus and Grafana config: parse, and point at metrics darkroom really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "workers" / "metrics.py", ROOT / "workers" / "autoscale" / "collector.py",
           ROOT / "workers" / "autoscale" / "gauges.py"]  # fmt: skip
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exported_names() -> set[str]:
    text = "\n".join(p.read_text() for p in SOURCES)
    return set(re.findall(r'"(darkroom_[a-z_]+)"', text))


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "darkroom.json").read_text())
    names = exported_names()
    used = {
        base(m)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for m in re.findall(r"darkroom_[a-z_]+", target["expr"])
    }
    assert used and used <= names, used - names
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_scrapes_every_worker_service_of_the_compose_file() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    names = set(jobs["darkroom-workers"]["dns_sd_configs"][0]["names"])
    assert names == {s for s in services if s.startswith("worker-")}
    k8s = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-k8s.yml").read_text())
    assert k8s["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] == "pod"
