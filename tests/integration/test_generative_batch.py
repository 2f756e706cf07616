"""Micro-batched previews on tiny real models, in-process: previews of one model that
meet in the batcher run as one diffusers call, and each gets back the image it would
have got alone, from its own seed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

import jobs.ops.generative  # noqa: F401  (registers the family until jobs.ops does)
from jobs.errors import JobCanceled
from jobs.ops import get_op
from jobs.schema import Lane
from pipelines.base import OpContext
from pipelines.batching import MicroBatcher

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

from pipelines.generative import OPS  # noqa: E402

BATCHABLE: list[tuple[str, dict[str, Any]]] = [
    ("kontext_edit", {}),
    ("ip2p_edit", {}),
    ("inpaint", {"box": [30, 20, 80, 50]}),
    ("inpaint", {"box": [30, 20, 80, 50], "model": "flux-fill"}),
]
IDS = ["kontext", "ip2p", "sd-inpaint", "flux-fill"]
BUDGET = {"max_side": 96, "preview_side": 64, "steps": 3, "preview_steps": 2}
PROMPTS = ["make the sky red", "turn it into a sketch", "add snow", "night time"]
JOBS = 3
FOREVER_S = 60.0  # a window no test waits out: each batch closes when it is full


def photo(shift: int) -> Image.Image:
    """A 5:3 image with structure, a different one for each `shift`."""
    y, x = np.mgrid[0:72, 0:120]
    disc = ((x - 60 + shift * 9) ** 2 + (y - 36) ** 2 < 400) * 200
    rgb = np.stack([(x * 2 + shift * 40) % 256, y * 3, disc], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def preview(op: str, raw: dict[str, Any], n: int, models: Any, **ctx: Any) -> Image.Image:
    """Job `n`'s preview: its own photo, prompt and seed."""
    params = get_op(op).validate({"prompt": PROMPTS[n], **BUDGET, **raw})
    context = OpContext(models=models, lane=Lane.PREVIEW, seed=100 + n, **ctx)
    out = OPS[op](photo(n), params, context)
    out.info = dict(context.info)
    return out


def at_once(jobs: int, render: Callable[[int], Image.Image]) -> list[Image.Image | BaseException]:
    """`render(n)` for n < jobs, each on its own thread; what each returned or raised."""
    outcomes: list[Image.Image | BaseException] = [RuntimeError("did not run")] * jobs

    def one(n: int) -> None:
        try:
            outcomes[n] = render(n)
        except BaseException as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return outcomes


def pixels(image: Image.Image | BaseException) -> np.ndarray:
    assert isinstance(image, Image.Image), image
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize(("op", "raw"), BATCHABLE, ids=IDS)
def test_previews_run_as_one_batch_and_each_gets_its_own_image(
    op: str, raw: dict[str, Any], resident: Any
) -> None:
    batcher = MicroBatcher(FOREVER_S, max_size=JOBS)
    batched = at_once(JOBS, lambda n: preview(op, raw, n, resident, batcher=batcher))
    again = at_once(JOBS, lambda n: preview(op, raw, n, resident, batcher=batcher))
    alone = [preview(op, raw, n, resident) for n in range(JOBS)]

    # one diffusers call per run, of every job
    assert (batcher.stats.batches, batcher.stats.largest) == (2, JOBS)
    for n in range(JOBS):
        image = batched[n]
        assert isinstance(image, Image.Image), image
        assert image.info["batch_size"] == JOBS and "batch_size" not in alone[n].info
        assert image.info["seed"] == 100 + n and image.info["decoder"] == "tiny"
        assert image.size == alone[n].size == (64, 38)
        # the same seeds batched again, or each job alone: the same pixels (on CPU with
        # one intra-op thread, as the fixture sets; measured: no pixel differs)
        assert np.array_equal(pixels(image), pixels(again[n]))
        assert np.array_equal(pixels(image), pixels(alone[n]))
    # each job's own input, prompt and seed: no two previews alike
    assert np.abs(pixels(batched[0]) - pixels(batched[1])).mean() > 0.5


def test_previews_of_another_size_or_guidance_do_not_join(resident: Any) -> None:
    # A window all three surely meet in: with one key they would run as a batch of 3.
    batcher = MicroBatcher(2.0, max_size=JOBS)
    sizes = [{}, {"preview_side": 80}, {"guidance": 1.5}]
    outcomes = at_once(JOBS, lambda n: preview("ip2p_edit", sizes[n], n, resident, batcher=batcher))
    assert [pixels(o).shape[1] for o in outcomes] == [64, 80, 64]
    assert [o.info["batch_size"] for o in outcomes if isinstance(o, Image.Image)] == [1, 1, 1]


def test_a_failing_batch_fails_every_job_in_it(resident: Any) -> None:
    batcher = MicroBatcher(FOREVER_S, max_size=JOBS)

    def lease_lost(fraction: float) -> None:
        raise RuntimeError("job 1's lease is lost")

    outcomes = at_once(
        JOBS,
        lambda n: preview(
            "kontext_edit", {}, n, resident, batcher=batcher,
            **({"progress": lease_lost} if n == 1 else {}),
        ),
    )  # fmt: skip
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError) and "lease is lost" in str(outcome)


def test_a_job_canceled_in_a_batch_ends_canceled_and_the_others_finish(resident: Any) -> None:
    batcher = MicroBatcher(FOREVER_S, max_size=JOBS)
    outcomes = at_once(
        JOBS,
        lambda n: preview(
            "kontext_edit", {}, n, resident, batcher=batcher, should_stop=lambda: n == 2
        ),
    )
    assert isinstance(outcomes[0], Image.Image) and isinstance(outcomes[1], Image.Image)
    assert isinstance(outcomes[2], JobCanceled)


@pytest.mark.parametrize("op", ["qwen_edit"])
def test_pipelines_whose_lists_are_not_batches_run_alone(op: str, resident: Any) -> None:
    # Qwen-Image-Edit-Plus reads an image list as the references of one edit.
    batcher = MicroBatcher(0.2, max_size=JOBS)
    outcomes = at_once(2, lambda n: preview(op, {}, n, resident, batcher=batcher))
    assert batcher.stats.batches == 0
    assert all("batch_size" not in o.info for o in outcomes if isinstance(o, Image.Image))
    assert all(isinstance(o, Image.Image) for o in outcomes), outcomes
