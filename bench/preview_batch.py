"""Micro-batched previews: bursts of 1, 2 and 4 same-model previews, batched and not,
side by side in one run, in-process on the tiny FLUX.1 Kontext model.

    python -m bench.preview_batch [--rounds 5] [--side 128] [--steps 4] [--window-ms 10]

Each round starts a burst of N previews at once, one thread each (the preview slots of a
`--lane both` worker), each with its own input, prompt and seed. Unbatched, the N
threads run N diffusers calls on the shared pipeline at once (previews share the card);
batched, they meet in a `MicroBatcher` (window `--window-ms`, at most `--slots`) and run
as one call. Per row: previews/s over every round, and the median and slowest latency
of one preview (burst start to its image). A burst of 1 shows the window's price: the
lone preview waits it out. Runs on CUDA where there is a card, else on the CPU with
`--threads` intra-op threads per call (unbatched calls run side by side on the cores;
a batch is one call). Tiny random weights make this a measure of per-call
overhead (Python, kernel launches, scheduler, decoder), the part batching removes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import numpy as np
import torch
from PIL import Image

import jobs.ops.generative  # noqa: F401  (registers the family until jobs.ops does)
from bench.harness import table
from jobs.ops import get_op
from jobs.schema import Lane
from model_store.manifest import Variant
from pipelines.base import OpContext
from pipelines.batching import MicroBatcher
from pipelines.generative.kontext import KontextEdit
from pipelines.generative.tiny import BUILDERS

BURSTS = (1, 2, 4)
JOIN_TIMEOUT_S = 600.0


def tiny_kontext(device: str) -> KontextEdit:
    """The tiny Kontext model with its tiny decoder, built in memory on `device`."""
    pipe = BUILDERS["kontext"]().to(device)
    pipe.set_progress_bar_config(disable=True)
    decoder = BUILDERS["taef1"]().to(device).eval()
    variant = Variant(name="fp32", kind="fp32", tiers=["a10"], memory_gb=0.1)
    return KontextEdit(pipe, variant, tiny_decoder=decoder, ref="kontext@tiny")


def photo(n: int, side: int) -> Image.Image:
    """A 4:3 picture with structure, different for each `n`."""
    y, x = np.mgrid[0 : side * 3 // 4, 0:side]
    rgb = np.stack([(x * 2 + n * 40) % 256, y * 3 % 256, ((x + y * n) % 64 < 32) * 200], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def burst(
    pipeline: KontextEdit, args: argparse.Namespace, size: int, batcher: MicroBatcher | None
) -> tuple[float, list[float]]:
    """One burst of `size` previews at once: its wall seconds and each preview's."""
    params = [
        get_op("kontext_edit").validate(
            {"prompt": f"make it a watercolor, take {n}", "preview_side": args.side,
             "preview_steps": args.steps, "max_side": args.side, "steps": args.steps}
        )
        for n in range(size)
    ]  # fmt: skip
    images = [photo(n, args.side) for n in range(size)]
    gate = threading.Barrier(size + 1)
    latencies = [0.0] * size

    def one(n: int) -> None:
        ctx = OpContext(lane=Lane.PREVIEW, seed=n, batcher=batcher)
        gate.wait()
        started = time.perf_counter()
        pipeline(images[n], params[n], ctx)
        latencies[n] = time.perf_counter() - started

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(size)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"a burst of {size} did not finish in {JOIN_TIMEOUT_S:.0f} s")
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, latencies


def measure(pipeline: KontextEdit, args: argparse.Namespace) -> list[list[object]]:
    rows: list[list[object]] = []
    for size in BURSTS:
        for mode in ("unbatched", "batched"):
            batcher = MicroBatcher(args.window_ms / 1000, args.slots) if mode == "batched" else None
            burst(pipeline, args, size, batcher)  # warm-up
            walls, latencies = [], []
            for _ in range(args.rounds):
                wall, each = burst(pipeline, args, size, batcher)
                walls.append(wall)
                latencies += each
            largest = batcher.stats.largest if batcher else 1
            rows.append(
                [
                    size,
                    mode,
                    largest,
                    f"{size * args.rounds / sum(walls):.1f}",
                    f"{statistics.median(latencies) * 1000:.1f}",
                    f"{max(latencies) * 1000:.1f}",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="bursts measured per row")
    parser.add_argument("--side", type=int, default=128, help="preview side, px (>= 64)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per preview")
    parser.add_argument("--window-ms", type=float, default=10.0, help="batch window")
    parser.add_argument("--slots", type=int, default=4, help="largest batch (preview_slots)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.threads)
    pipeline = tiny_kontext(device)
    rows = measure(pipeline, args)
    cpu = f"CPU ({os.cpu_count()} cores), {args.threads} intra-op thread(s) per call"
    where = torch.cuda.get_device_name() if device == "cuda" else cpu
    print(
        f"tiny kontext previews, {args.side}px, {args.steps} steps, window {args.window_ms} ms, "
        f"at most {args.slots} per batch, {args.rounds} bursts per row, on {where}"
    )
    header = ["burst", "mode", "largest batch", "previews/s", "p50 ms", "max ms"]
    print(table(rows, header))


if __name__ == "__main__":
    main()
