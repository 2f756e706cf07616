"""Kubernetes manifests, checked offline against their schemas and against the queues."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.settings import Settings
from jobs.tiers import LOCAL_TIERS, all_queues
from transport.messages import priority_lists

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def test_generated_manifests_are_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("deploy_render", K8S / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    for name, text in render.render().items():
        assert (K8S / name).read_text() == text, f"run python deploy/k8s/render.py ({name})"


def test_builtin_objects_validate_against_the_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.utils.latest_version()
    checked = 0
    for doc in documents():
        if doc["apiVersion"].startswith("keda.sh"):
            continue
        kv.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 15


def test_the_schema_check_catches_a_broken_deployment() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    broken = dict(of_kind("Deployment")["darkroom-worker-a10-final"])
    broken["spec"] = {**broken["spec"], "replicas": "many"}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.utils.latest_version(), strict=True)


def test_every_queue_has_a_deployment_and_a_scaled_object_on_its_lists() -> None:
    deployments, scaled = of_kind("Deployment"), of_kind("ScaledObject")
    for queue in all_queues(LOCAL_TIERS):
        name = "darkroom-worker-" + queue.replace(".", "-")
        assert name in deployments, queue
        assert scaled[name]["spec"]["scaleTargetRef"]["name"] == name
        lists = [t["metadata"]["listName"] for t in scaled[name]["spec"]["triggers"]]
        assert lists == priority_lists(queue)


def test_gpu_workers_ask_for_a_gpu_on_their_class_of_node() -> None:
    deployments = of_kind("Deployment")
    for tier in LOCAL_TIERS:
        for lane in ("preview", "final"):
            pod = deployments[f"darkroom-worker-{tier.name}-{lane}"]["spec"]["template"]["spec"]
            limits = pod["containers"][0]["resources"]["limits"]
            if tier.vram_gb:
                assert limits["nvidia.com/gpu"] == 1
                assert pod["nodeSelector"] == {"darkroom.io/gpu-class": tier.name}
                assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
            else:
                assert "nvidia.com/gpu" not in limits and "nodeSelector" not in pod


def test_workers_probe_drain_and_wait_for_the_longest_render() -> None:
    limit = Settings().render_time_limit_s
    for name, deployment in of_kind("Deployment").items():
        if not name.startswith("darkroom-worker-"):
            continue
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["exec"]["command"] == ["darkroom", "worker", "--probe"]
        assert "livenessProbe" in container and "preStop" in container["lifecycle"]
        if name.endswith("-final"):
            assert pod["terminationGracePeriodSeconds"] > limit
        assert "replicas" not in deployment["spec"]  # the autoscaler owns it


def test_final_pools_scale_to_zero_and_preview_pools_stay_warm() -> None:
    for name, scaled in of_kind("ScaledObject").items():
        low = scaled["spec"]["minReplicaCount"]
        assert low == 0 if name.endswith("-final") else low >= 1


def test_the_autoscaler_may_patch_deployment_scale_and_nothing_more() -> None:
    role = of_kind("Role")["darkroom-autoscaler"]
    scale = [r for r in role["rules"] if "deployments/scale" in r["resources"]]
    assert scale and "patch" in scale[0]["verbs"]
    assert all("delete" not in r["verbs"] for r in role["rules"])
