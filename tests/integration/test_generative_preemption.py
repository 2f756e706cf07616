"""Previews run between two denoising steps of a final on the same resident model, and
the final comes out bit-identical to an uninterrupted render with the same seed.

In-process, with the worker's own step scheduler and resident cache and tiny real
models: the final's thread steps aside at every boundary while a preview (another
seed, another prompt, same pipeline object) renders in a second thread.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image

from jobs.ops import get_op
from jobs.schema import Lane
from pipelines.base import OpContext
from workers.steps import StepScheduler

pytestmark = [pytest.mark.integration, pytest.mark.gen]
pytest.importorskip("diffusers")

from pipelines.generative import OPS  # noqa: E402

FINAL = {"prompt": "make the sky red", "max_side": 96, "steps": 6}
PREVIEW = {"prompt": "a watercolour", "max_side": 96, "preview_side": 64, "preview_steps": 2}


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    y, x = np.mgrid[0:72, 0:120]
    rgb = np.stack([x * 2, y * 3, ((x - 60) ** 2 + (y - 36) ** 2 < 400) * 200], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def render(op: str, image: Image.Image, raw: dict[str, Any], ctx: OpContext) -> Image.Image:
    out: Image.Image = OPS[op](image, get_op(op).validate(raw), ctx)
    return out


class Interrupter:
    """A final's `between_steps`: start a preview in another thread, wait until it waits
    for the card, then step aside for it (what a worker does when one arrives)."""

    def __init__(self, scheduler: StepScheduler, preview: Any) -> None:
        self.scheduler = scheduler
        self.preview = preview
        self.previews: list[Image.Image] = []

    def __call__(self) -> None:
        def run() -> None:
            with self.scheduler.holding(Lane.PREVIEW):
                self.previews.append(self.preview(len(self.previews)))

        thread = threading.Thread(target=run)
        thread.start()
        while not self.scheduler.previews_waiting:
            threading.Event().wait(0.001)
        self.scheduler.between_steps()
        thread.join(60)


@pytest.mark.parametrize("op", ["kontext_edit", "ip2p_edit"])
def test_a_final_interrupted_by_previews_renders_the_same_bytes(
    op: str, photo: Image.Image, resident: Any
) -> None:
    alone = render(op, photo, FINAL, OpContext(seed=11, models=resident))

    scheduler = StepScheduler()

    def preview(n: int) -> Image.Image:
        ctx = OpContext(lane=Lane.PREVIEW, seed=100 + n, models=resident)
        return render(op, photo, PREVIEW, ctx)

    interrupter = Interrupter(scheduler, preview)
    ctx = OpContext(seed=11, models=resident, between_steps=interrupter)
    with scheduler.holding(Lane.FINAL):
        interrupted = render(op, photo, FINAL, ctx)

    # a boundary after every denoising step, the last included (the VAE decode follows)
    assert len(interrupter.previews) == FINAL["steps"], "a preview ran at every boundary"
    assert scheduler.stats.overtakes == FINAL["steps"]
    assert all(max(p.size) == 64 for p in interrupter.previews)
    assert interrupted.tobytes() == alone.tobytes()


def test_an_upscale_yields_between_tiles_and_keeps_its_output() -> None:
    """Tiles are an upscale's steps: the same output with a boundary between each two."""
    from pipelines.upscale.tiles import plan, upscale_tiled

    def runner(patch: np.ndarray) -> np.ndarray:  # NCHW float32, nearest-neighbour x2
        return np.asarray(patch.repeat(2, axis=2).repeat(2, axis=3))

    rgb = np.random.default_rng(3).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    tiles = plan(40, 56, 16, 4)
    alone = upscale_tiled(rgb, runner, 2, tiles)
    boundaries: list[int] = []
    interrupted = upscale_tiled(rgb, runner, 2, tiles, between_steps=lambda: boundaries.append(1))
    assert np.array_equal(alone, interrupted)
    assert np.array_equal(alone, rgb.repeat(2, axis=0).repeat(2, axis=1))
    assert len(boundaries) == len(tiles) - 1 > 1
