"""`identity_portrait` on this CPU, stage by stage, with the tiny InstantID model.

    python -m bench.identity [--runs 10] [--side 96] [--steps 4]

The stages a final job goes through, each the median of `--runs` after one warm-up:
face analysis (YuNet + SFace on the reference), the generator's embedding (ArcFace
ONNX), one render (IdentityNet + adapter + UNet, `--steps` steps), and the identity
gate on a render with no face (every detector pass runs: what tiny renders cost) and
on a real face photo of the same size (the first pass finds it). Then the whole op:
one attempt, and the default three when every render fails the gate.

Tiny random weights make the render stage a measure of our loop's overhead, not of
SDXL; the face stages run the real networks at their real sizes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import jobs.ops.identity  # noqa: F401  (registers the op until jobs.ops imports it)
from bench.harness import table
from jobs.ops import get_op
from jobs.ops.identity import IdentityPortraitParams
from jobs.settings import Settings
from model_store import ModelStore
from pipelines.base import OpContext
from pipelines.generative.tiny import make_tiny, publish_tiny
from pipelines.identity import IdentityPortrait, identity_portrait
from pipelines.identity.gate import IdentityMatcher
from pipelines.identity.subject import find_subject
from pipelines.portrait.nets import face_analyzer
from samples.photos import load_photo
from workers.resident import ResidentModels


def median_ms(call: Callable[[], Any], runs: int) -> float:
    call()  # warm-up: networks built, caches filled
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def tiny_store(root: Path) -> ModelStore:
    settings = Settings(home=root / "home", model_store=str(root / "store"), model_cache=root / "c")
    store = ModelStore.from_settings(settings)
    make_tiny(root / "built")
    publish_tiny(store, root / "built")
    return store


def measure(args: argparse.Namespace, root: Path) -> list[tuple[str, str]]:
    store = tiny_store(root)
    models = ResidentModels(store, "a10", "cpu", budget_gb=8.0)
    started = time.perf_counter()
    pipeline = models.get("instantid-sdxl@stable")
    load_ms = (time.perf_counter() - started) * 1000
    assert isinstance(pipeline, IdentityPortrait)

    photo = load_photo("astronaut").crop((60, 0, 360, 200))
    raw = {"prompt": "a portrait", "max_side": args.side, "steps": args.steps}
    params = get_op("identity_portrait").validate(raw)
    assert isinstance(params, IdentityPortraitParams)
    analyzer = face_analyzer()
    subject = find_subject(photo, [], params, analyzer)
    ctx = OpContext(seed=1, models=models)
    plan, inputs = pipeline.prepare(subject, params, ctx)
    render = pipeline.render(ctx, plan, params.steps, **inputs)
    scorer = IdentityMatcher(analyzer, [subject.sface_embeddings()])
    face_render = photo.resize(render.size)

    def op(**extra: Any) -> None:
        identity_portrait(photo, params.model_copy(update=extra), replace(ctx, info={}))

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("face analysis: YuNet + SFace, 1 reference",
         lambda: find_subject(photo, [], params, analyzer)),
        ("embedding: ArcFace ONNX + average", lambda: pipeline.face_embedding(subject)),
        (f"render: {params.steps} steps at {plan.work[0]}x{plan.work[1]}",
         lambda: pipeline.render(ctx, plan, params.steps, **inputs)),
        ("gate: a render with no face (every pass)", lambda: scorer(render)),
        ("gate: a real face at that size", lambda: scorer(face_render)),
        ("op: 1 attempt (min_identity 0)", lambda: op(min_identity=0.0)),
        ("op: 3 attempts, every one fails the gate", lambda: op(on_mismatch="best")),
    ]  # fmt: skip
    rows = [("model load, cold (pull, SDXL parts, adapter, encoder)", f"{load_ms:.0f}")]
    rows += [(name, f"{median_ms(call, args.runs):.1f}") for name, call in stages]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--side", type=int, default=96, help="longest side of the portrait")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: threads only add spin-waits on 2 cores
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp))
    print(table(rows, ["stage (tiny InstantID, CPU)", "median ms"]))


if __name__ == "__main__":
    main()
