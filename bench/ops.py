"""Per-op latency of the classic ops at 1 MP on this CPU, and the restore recipe's total.

    python -m bench.ops [--repeat 7] [--megapixels 1.0]

Every op runs on the same real photo (the astronaut, enlarged and aged like an old
print) with the params the demo recipe uses, or representative ones; one warm-up
run, then the median of `--repeat` timed runs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from PIL import Image

from jobs.ops import get_op
from jobs.schema import Lane, Recipe
from pipelines.base import OpContext
from pipelines.classic import OPS
from samples.photos import add_defects, add_noise, fade, load_photo
from samples.recipes import RESTORE_RECIPE

# op -> params for the ops the recipe does not use (or uses with other settings)
BENCH_PARAMS: dict[str, dict[str, Any]] = {
    "resize": {"max_side": 512},
    "crop": {"aspect": "4:5"},
    "convert": {"mode": "gray"},
    "exposure": {"ev": 0.7},
}


def old_print(megapixels: float) -> Image.Image:
    """A ~`megapixels` MP aged photo: faded, scratched, dusty and grainy."""
    photo = load_photo("astronaut")
    side = round(math.sqrt(megapixels * 1e6))
    enlarged = photo.resize((side, side), Image.Resampling.LANCZOS)
    damaged, _ = add_defects(fade(enlarged, 0.55), scratches=6, specks=60, seed=7)
    return add_noise(damaged, 6.0, seed=7)


def p50_ms(work: Callable[[], object], repeat: int) -> float:
    work()  # warm-up: first-call allocations, OpenCV thread pool start
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def op_params() -> dict[str, dict[str, Any]]:
    recipe = Recipe.model_validate(RESTORE_RECIPE)
    params = {step.op: step.params for step in recipe.steps}
    return {name: {**params.get(name, {}), **BENCH_PARAMS.get(name, {})} for name in OPS}


def run_recipe(image: Image.Image, ctx: OpContext) -> Image.Image:
    for step in Recipe.model_validate(RESTORE_RECIPE).steps:
        image = OPS[step.op](image, step.typed_params(), ctx)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--megapixels", type=float, default=1.0)
    args = parser.parse_args()

    image = old_print(args.megapixels)
    print(f"classic ops on a {image.width}x{image.height} RGB photo, p50 of {args.repeat} runs")
    print(f"{'op':<24}{'params':<48}{'p50 ms':>8}")
    for name, params in op_params().items():
        ms = p50_ms(
            partial(OPS[name], image, get_op(name).validate(params), OpContext()), args.repeat
        )
        print(f"{name:<24}{params!s:<48}{ms:>8.1f}")
    preview = OpContext(lane=Lane.PREVIEW)
    typed = get_op("denoise").validate(op_params()["denoise"])
    ms = p50_ms(lambda: OPS["denoise"](image, typed, preview), args.repeat)
    print(f"{'denoise (preview lane)':<24}{'search window 11':<48}{ms:>8.1f}")
    ms = p50_ms(lambda: run_recipe(image, OpContext()), args.repeat)
    steps = " -> ".join(step.op for step in Recipe.model_validate(RESTORE_RECIPE).steps)
    print(f"{'RESTORE_RECIPE total':<24}{'':<48}{ms:>8.1f}")
    print(f"  ({steps})")


if __name__ == "__main__":
    main()
