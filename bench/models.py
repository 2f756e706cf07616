"""Resident models, measured side by side on this CPU with the tiny models.

1. Cold load vs warm call per pipeline: what a worker pays once (pull from the store
   and `from_pretrained`, plus the first call) against every later job (a cache hit
   and one edit).
2. The resident cache under a mixed-model job stream: reloads per 100 jobs for a
   cache bounded by an A10's 24 GB (models republished with their full-size memory
   figures) against an unbounded one, and against loading per job.

Run: `python -m bench.models [--jobs 100] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import jobs.ops.generative  # noqa: F401  (registers the family until jobs.ops does)
from jobs.ops import get_op
from jobs.schema import Lane
from jobs.settings import Settings
from model_store import ModelStore, VariantSpec
from pipelines.base import OpContext
from pipelines.generative import OPS
from pipelines.generative.tiny import make_tiny, publish_tiny
from workers.resident import ResidentModels

# model -> (op, extra params)
PIPELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "kontext": ("kontext_edit", {}),
    "qwen-edit-plus": ("qwen_edit", {}),
    "ip2p": ("ip2p_edit", {}),
    "sd-inpaint": ("inpaint", {"box": [16, 16, 64, 48]}),
    "flux-fill": ("inpaint", {"box": [16, 16, 64, 48]}),
}
# What each model needs resident on an A10 at full size (the variant an A10 runs).
A10_GB = {
    "kontext": 20.0,
    "qwen-edit-plus": 18.0,
    "ip2p": 4.0,
    "sd-inpaint": 4.0,
    "flux-fill": 20.0,
}
# A plausible day: mostly Kontext edits, some quick IP2P, inpainting now and then.
STREAM_WEIGHTS = {
    "kontext": 0.45,
    "ip2p": 0.25,
    "sd-inpaint": 0.1,
    "flux-fill": 0.1,
    "qwen-edit-plus": 0.1,
}
A10_BUDGET_GB = 24.0
A100_BUDGET_GB = 80.0  # the same stream if these variants ran on an A100
WARM_CALLS = 5


@dataclass
class ColdWarm:
    model: str
    load_s: float
    first_call_s: float
    warm_call_s: float


def _edit(models: ResidentModels, name: str, image: Image.Image) -> float:
    op, extra = PIPELINES[name]
    raw = {"prompt": "make it red", "model": name, "max_side": 96, "steps": 4, **extra}
    params = get_op(op).validate(raw)
    started = time.perf_counter()
    OPS[op](image, params, OpContext(lane=Lane.FINAL, seed=1, models=models))
    return time.perf_counter() - started


def cold_vs_warm(store: ModelStore, image: Image.Image) -> list[ColdWarm]:
    rows = []
    for name in PIPELINES:
        models = ResidentModels(store, "a10", "cpu", budget_gb=64)
        first = _edit(models, name, image)  # includes the load
        load = models.stats.load_seconds
        warm = statistics.median(_edit(models, name, image) for _ in range(WARM_CALLS))
        rows.append(ColdWarm(name, load, first - load, warm))
        models.clear()
    return rows


def full_size_store(tiny: ModelStore, folders: dict[str, Path], root: Path) -> ModelStore:
    """The tiny models republished with the memory their full-size variants need."""
    settings = Settings(home=root, model_store=str(root / "store"), model_cache=root / "cache")
    store = ModelStore.from_settings(settings)
    for name, gb in A10_GB.items():
        variant = VariantSpec(name="a10", kind="fp32", tiers=["a10"], memory_gb=gb)
        store.publish(folders[name], name, "1", variants=[variant])
    return store


@dataclass
class StreamResult:
    policy: str
    loads: int
    evictions: int
    load_s: float
    peak_gb: float


def run_stream(
    store: ModelStore, stream: Sequence[str], budget_gb: float, policy: str
) -> StreamResult:
    models = ResidentModels(store, "a10", "cpu", budget_gb=budget_gb)
    peak = 0.0
    for name in stream:
        models.get(name, Lane.FINAL)
        peak = max(peak, models.used_gb)
    result = StreamResult(
        policy, models.stats.loads, models.stats.evictions, models.stats.load_seconds, peak
    )
    models.clear()
    return result


def per_job_loading(store: ModelStore, stream: Sequence[str]) -> StreamResult:
    """No cache at all: every job loads its model (what a task-level load would do)."""
    load_s = 0.0
    for name in stream:
        models = ResidentModels(store, "a10", "cpu", budget_gb=A10_BUDGET_GB)
        models.get(name, Lane.FINAL)
        load_s += models.stats.load_seconds
        models.clear()
    return StreamResult("load per job", len(stream), 0, load_s, max(A10_GB.values()))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads only add contention

    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        folders = make_tiny(root / "tiny")
        built = time.perf_counter() - started
        settings = Settings(home=root, model_store=str(root / "store"), model_cache=root / "c")
        store = ModelStore.from_settings(settings)
        publish_tiny(store, root / "tiny")
        print(f"built {len(folders)} tiny models in {built:.2f} s\n")

        image = Image.new("RGB", (120, 72), (90, 140, 200))
        print("1. cold load vs warm call (CPU, tiny weights, 96 px, 4 steps)")
        print(
            f"{'model':16} {'load s':>8} {'1st call s':>11} {'warm call s':>12} {'cold/warm':>10}"
        )
        for row in cold_vs_warm(store, image):
            cold = row.load_s + row.first_call_s
            print(
                f"{row.model:16} {row.load_s:8.3f} {row.first_call_s:11.3f} "
                f"{row.warm_call_s:12.3f} {cold / row.warm_call_s:9.1f}x"
            )

        rng = random.Random(args.seed)
        names, weights = zip(*STREAM_WEIGHTS.items(), strict=True)
        stream = rng.choices(names, weights=weights, k=args.jobs)
        big = full_size_store(store, folders, root / "full")
        print(
            f"\n2. {args.jobs} jobs over {len(names)} models, full-size memory on an A10 "
            f"({A10_BUDGET_GB:g} GB)"
        )
        print(
            f"{'policy':22} {'loads':>6} {'per 100 jobs':>13} {'evictions':>10} "
            f"{'load s':>8} {'peak GB':>8}"
        )
        for result in (
            run_stream(big, stream, A10_BUDGET_GB, f"bounded {A10_BUDGET_GB:g} GB (LRU)"),
            run_stream(big, stream, A100_BUDGET_GB, f"bounded {A100_BUDGET_GB:g} GB (LRU)"),
            run_stream(big, stream, float("inf"), "unbounded"),
            per_job_loading(big, stream),
        ):
            per_100 = 100 * result.loads / len(stream)
            print(
                f"{result.policy:22} {result.loads:6d} {per_100:13.1f} {result.evictions:10d} "
                f"{result.load_s:8.2f} {result.peak_gb:8.1f}"
            )
        print(
            "\nunbounded never reloads but would hold "
            f"{sum(A10_GB.values()):g} GB: more than the card has."
        )


if __name__ == "__main__":
    main()
