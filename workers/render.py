"""Running one job's recipe: input in, steps through `pipelines`, output to storage.

Knows nothing of Celery: the task in `workers.tasks` wraps it with state transitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from jobs.errors import InputInvalid, JobCanceled, JobError
from jobs.schema import Job, Lane
from jobs.settings import Settings
from pipelines.base import OpContext
from pipelines.registry import implementation
from storage import open_location, read_uri
from storage.images import CONTENT_TYPES, decode_image, encode_image


@dataclass
class RenderResult:
    output: str
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "timings": self.timings,
            "info": self.info,
            "steps": self.steps,
        }


@dataclass
class Hooks:
    """How a render reports back: progress (0..1 of the whole job) and cancellation."""

    progress: Callable[[float], None] = lambda fraction: None
    canceled: Callable[[], bool] = lambda: False
    models: Any = None
    model_load_seconds: Callable[[], float] = lambda: 0.0
    """Seconds this process has spent loading models so far (0 before the first)."""
    before_publish: Callable[[], None] = lambda: None
    """Called before each output write; raises to stop the job writing (canceled, or its
    attempt superseded)."""


def load_input(uri: str, settings: Settings) -> Image.Image:
    data = read_uri(uri, settings)
    try:
        return decode_image(data, settings)
    except JobError as exc:  # say which input, as a batch has thousands
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        raise type(exc)(f"{name}: {exc.message}") from None


def output_key(job: Job, prefix: str, suffix: str = "") -> str:
    name = job.output.key or job.id
    return f"{prefix}{name}{suffix}.{job.output.extension}"


def _step_progress(hooks: Hooks, index: int, count: int) -> Callable[[float], None]:
    """Turn one step's 0..1 progress into the whole job's."""

    def report(fraction: float) -> None:
        hooks.progress((index + min(max(fraction, 0.0), 1.0)) / count)

    return report


def render(job: Job, settings: Settings, hooks: Hooks) -> RenderResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # 1. fetch and check the inputs
    image = load_input(job.input, settings)
    extras = [load_input(uri, settings) for uri in job.extra_inputs]
    timings["input_s"] = time.perf_counter() - started
    storage, prefix = open_location(job.output.uri or settings.output, settings)

    # 2. run the steps, in order, checking for cancellation between them
    steps = job.recipe.steps
    loaded_before = hooks.model_load_seconds()
    info: dict[str, Any] = {}
    for index, step in enumerate(steps):
        if hooks.canceled():
            raise JobCanceled(f"canceled before step {index + 1} ({step.op})")
        step_started = time.perf_counter()
        ctx = OpContext(
            lane=job.mode,
            seed=job.seed,
            extra_inputs=extras,
            models=hooks.models,
            progress=_step_progress(hooks, index, len(steps)),
            should_stop=hooks.canceled,
        )
        image = implementation(step.op)(image, step.typed_params(), ctx)
        if not isinstance(image, Image.Image):
            raise TypeError(f"op {step.op} returned {type(image).__name__}, not an image")
        info.update({f"{step.op}.{k}": v for k, v in ctx.info.items()})
        timings[f"step{index}_{step.op}_s"] = time.perf_counter() - step_started
        hooks.progress((index + 1) / len(steps))
        if job.output.keep_steps:
            hooks.before_publish()
            storage.put(
                output_key(job, prefix, f".steps/{index:02d}-{step.op}"),
                encode_image(image, job.output),
                CONTENT_TYPES[job.output.format],
            )

    timings["model_load_s"] = hooks.model_load_seconds() - loaded_before

    # 3. encode and write under the job's deterministic key (a redelivery overwrites)
    if image.width < 1 or image.height < 1:
        raise InputInvalid("the recipe produced an empty image")
    write_started = time.perf_counter()
    encoded = encode_image(image, job.output, fast=job.mode is Lane.PREVIEW)
    hooks.before_publish()
    uri = storage.put(output_key(job, prefix), encoded, CONTENT_TYPES[job.output.format])
    timings["output_s"] = time.perf_counter() - write_started
    timings["total_s"] = time.perf_counter() - started
    return RenderResult(
        output=uri,
        width=image.width,
        height=image.height,
        timings=timings,
        info=info,
        steps=[s.op for s in steps],
    )
