"""`multi_identity` on this CPU, stage by stage, with the tiny UNO model and two people.

    python -m bench.multi_identity [--runs 10] [--side 96] [--steps 4]

The stages a final job goes through, each the median of `--runs` after one warm-up:
finding and aligning the references' faces (YuNet + SFace, two photos), one render
(`--steps` steps, two references as extra tokens), the multi-face gate on a render with
no face (every detector pass runs: what tiny renders cost) and on a real two-person
photo (both faces found, embedded and paired). Then the whole op: one attempt, and the
default three when every render fails the gate.

Tiny random weights make the render stage a measure of our loop's overhead, not of
FLUX; the face stages run the real networks at their real sizes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.harness import table
from bench.identity import median_ms, tiny_store
from jobs.ops import get_op
from jobs.ops.multi_identity import MultiIdentityParams
from pipelines.base import OpContext
from pipelines.identity.gate import IdentityMatcher
from pipelines.multi_identity import MultiIdentity, multi_identity
from pipelines.multi_identity.people import find_people
from pipelines.portrait.nets import face_analyzer
from samples.photos import load_photo
from workers.resident import ResidentModels


def grace_hopper() -> Image.Image:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return image.convert("RGB")


def group_photo(left: Image.Image, right: Image.Image, height: int = 320) -> Image.Image:
    scaled = [p.resize((round(p.width * height / p.height), height)) for p in (left, right)]
    group = Image.new("RGB", (scaled[0].width + scaled[1].width, height))
    group.paste(scaled[0], (0, 0))
    group.paste(scaled[1], (scaled[0].width, 0))
    return group


def measure(args: argparse.Namespace, root: Path) -> list[tuple[str, str]]:
    models = ResidentModels(tiny_store(root), "a10", "cpu", budget_gb=8.0)
    started = time.perf_counter()
    pipeline = models.get("umo-uno@stable")
    load_ms = (time.perf_counter() - started) * 1000
    assert isinstance(pipeline, MultiIdentity)

    astronaut, hopper = load_photo("astronaut"), grace_hopper()
    raw = {"prompt": "two friends", "max_side": args.side, "steps": args.steps}
    params = get_op("multi_identity").validate({**raw, "reference_side": 64})
    assert isinstance(params, MultiIdentityParams)
    analyzer = face_analyzer()
    people = find_people(astronaut, [hopper], analyzer)
    ctx = OpContext(seed=1, models=models, extra_inputs=[hopper])
    plan, inputs = pipeline.prepare(people, params, ctx)
    render = pipeline.render(ctx, plan, params.steps, **inputs)
    matcher = IdentityMatcher(analyzer, [[p.embedding] for p in people])
    group = group_photo(hopper, astronaut)

    def op(**extra: Any) -> None:
        multi_identity(astronaut, params.model_copy(update=extra), replace(ctx, info={}))

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("references: 2 photos, faces found + aligned",
         lambda: [pipeline.prepare(find_people(astronaut, [hopper], analyzer), params, ctx)]),
        (f"render: {params.steps} steps at {plan.work[0]}x{plan.work[1]}, 2 references",
         lambda: pipeline.render(ctx, plan, params.steps, **inputs)),
        ("gate: a render with no face (every pass)", lambda: matcher(render)),
        (f"gate: a {group.width}x{group.height} photo of both, paired", lambda: matcher(group)),
        ("op: 1 attempt (min_identity 0)", lambda: op(min_identity=0.0)),
        ("op: 3 attempts, every one fails the gate", lambda: op(on_mismatch="best")),
    ]  # fmt: skip
    rows = [("model load, cold (pull, FLUX parts, LoRA)", f"{load_ms:.0f}")]
    rows += [(name, f"{median_ms(call, args.runs):.1f}") for name, call in stages]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--side", type=int, default=96, help="longest side of the image")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: threads only add spin-waits on 2 cores
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp))
    print(table(rows, ["stage (tiny UNO, CPU)", "median ms"]))


if __name__ == "__main__":
    main()
