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
from storage.deep import DeepImage, as_pil
from storage.images import CONTENT_TYPES, Picture, decode_picture, encode_frames, encode_image
from workers.frames import chosen_frames, prepared_for, with_input_alpha


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


def load_input(uri: str, settings: Settings) -> Image.Image:
    """The first frame of an extra input (a mask, a reference face) as 8-bit PIL."""
    return as_pil(load_picture(uri, settings).frames[0])


def load_picture(uri: str, settings: Settings) -> Picture:
    """Every frame of the job's input, at its depth, with its metadata."""
    data = read_uri(uri, settings)
    try:
        return decode_picture(data, settings)
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
    info: dict[str, Any] = {}

    # 1. fetch and check the inputs; choose the frames (pages, animation) to render
    picture = load_picture(job.input, settings)
    extras = [load_input(uri, settings) for uri in job.extra_inputs]
    frames = chosen_frames(picture, job, info)
    info.update({"metadata_" + str(i): note for i, note in enumerate(picture.metadata.notes)})
    timings["input_s"] = time.perf_counter() - started
    storage, prefix = open_location(job.output.uri or settings.output, settings)

    # 2. run the steps on every frame, in order, checking for cancellation between them
    loaded_before = hooks.model_load_seconds()
    rendered = [
        _run_steps(job, frame, extras, hooks, info, timings, (n, len(frames)), storage, prefix)
        for n, frame in enumerate(frames)
    ]
    timings["model_load_s"] = hooks.model_load_seconds() - loaded_before

    # 3. encode and write under the job's deterministic key (a redelivery overwrites)
    if any(image.width < 1 or image.height < 1 for image in rendered):
        raise InputInvalid("the recipe produced an empty image")
    write_started = time.perf_counter()
    outputs = _write(job, picture, rendered, storage, prefix)
    if len(outputs) > 1:
        info["outputs"] = outputs
    timings["output_s"] = time.perf_counter() - write_started
    timings["total_s"] = time.perf_counter() - started
    return RenderResult(
        output=outputs[0],
        width=rendered[0].width,
        height=rendered[0].height,
        timings=timings,
        info=info,
        steps=[s.op for s in job.recipe.steps],
    )


def _run_steps(
    job: Job,
    image: Any,
    extras: list[Image.Image],
    hooks: Hooks,
    info: dict[str, Any],
    timings: dict[str, float],
    frame: tuple[int, int],
    storage: Any,
    prefix: str,
) -> Any:
    """One frame through the recipe; progress counts frames x steps."""
    steps = job.recipe.steps
    index_of_frame, frames = frame
    total = len(steps) * frames
    for index, step in enumerate(steps):
        at = index_of_frame * len(steps) + index
        if hooks.canceled():
            raise JobCanceled(f"canceled before step {index + 1} ({step.op})")
        step_started = time.perf_counter()
        ctx = OpContext(
            lane=job.mode,
            seed=job.seed,
            extra_inputs=extras,
            models=hooks.models,
            progress=_step_progress(hooks, at, total),
            should_stop=hooks.canceled,
        )
        given = prepared_for(step.op, image, info)
        edited = implementation(step.op)(given, step.typed_params(), ctx)
        image = with_input_alpha(step.op, given, edited)
        if not isinstance(image, Image.Image | DeepImage):
            raise TypeError(f"op {step.op} returned {type(image).__name__}, not an image")
        info.update({f"{step.op}.{k}": v for k, v in ctx.info.items()})
        key = f"step{index}_{step.op}_s"
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - step_started
        hooks.progress((at + 1) / total)
        if job.output.keep_steps and index_of_frame == 0:  # steps of the first frame
            storage.put(
                output_key(job, prefix, f".steps/{index:02d}-{step.op}"),
                encode_image(image, job.output),
                CONTENT_TYPES[job.output.format],
            )
    return image


def _write(job: Job, picture: Picture, rendered: list[Any], storage: Any, prefix: str) -> list[str]:
    """Write the output file(s): one holding every frame where the format can, else one
    per frame (`<key>.p2`, `<key>.p3`, ...); returns their URIs, the first first."""
    spec = job.output
    animated = picture.animated and len(rendered) > 1
    files = encode_frames(
        rendered,
        spec,
        fast=job.mode is Lane.PREVIEW,
        metadata=picture.metadata,
        durations=picture.durations if animated else (),
        loop=picture.loop if animated else None,
    )
    content_type = CONTENT_TYPES[spec.format]
    return [
        storage.put(output_key(job, prefix, f".p{n + 1}" if n else ""), data, content_type)
        for n, data in enumerate(files)
    ]
