"""Running one job's recipe: input in, steps through `pipelines`, output to storage.

Knows nothing of Celery: the task in `workers.tasks` wraps it with state transitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from jobs.errors import InputInvalid, JobCanceled, JobError
from jobs.schema import Job, Lane
from jobs.settings import Settings
from pipelines.base import ModelSource, Op, OpContext
from pipelines.batching import MicroBatcher
from pipelines.registry import implementation
from storage import Storage, open_location, read_uri
from storage.deep import DeepImage, as_pil
from storage.images import CONTENT_TYPES, Picture, decode_picture, encode_frames, encode_image
from workers.frames import Frame, chosen_frames, prepared_for, with_input_alpha


@dataclass
class RenderResult:
    output: str
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        """Who rendered the job: `local`, or the hosted provider and model a step named."""
        named = [str(v) for k, v in self.info.items() if k.endswith(".backend")]
        return named[0] if named else "local"

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
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
    models: ModelSource | None = None
    model_load_seconds: Callable[[], float] = lambda: 0.0
    """Seconds this process has spent loading models so far (0 before the first)."""
    implementation: Callable[[str], Op] = implementation
    """Op name -> what runs it; the hosted tier swaps in `workers.hosted.implementations`."""
    before_publish: Callable[[], None] = lambda: None
    """Called before each output write; raises to stop the job writing (canceled, or its
    attempt superseded)."""
    hold_card: Callable[[], AbstractContextManager[None]] = nullcontext
    """Held around every op: the card's step scheduler, in a process serving both lanes."""
    between_steps: Callable[[], float] = lambda: 0.0
    """What ops call between two inner steps (`OpContext.between_steps`); returns the
    seconds the render stepped aside for previews there."""
    batcher: MicroBatcher | None = None
    """The process's preview micro-batcher (`OpContext.batcher`), if it has one."""


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
    started = time.perf_counter()

    # 1. fetch and check the inputs; choose the frames (pages, animation) to render
    picture = load_picture(job.input, settings)
    storage, prefix = open_location(job.output.uri or settings.output, settings)
    run = _Run(job, hooks, [load_input(uri, settings) for uri in job.extra_inputs], storage, prefix)
    frames = chosen_frames(picture, job, run.info)
    if picture.metadata.notes:
        run.info["metadata_notes"] = list(picture.metadata.notes)
    run.timings["input_s"] = time.perf_counter() - started

    # 2. run the steps on every frame, in order, checking for cancellation between them
    loaded_before = hooks.model_load_seconds()
    rendered = [run.frame(image, n, len(frames)) for n, image in enumerate(frames)]
    run.timings["model_load_s"] = hooks.model_load_seconds() - loaded_before

    # 3. encode and write under the job's deterministic key (a redelivery overwrites)
    if any(image.width < 1 or image.height < 1 for image in rendered):
        raise InputInvalid("the recipe produced an empty image")
    write_started = time.perf_counter()
    outputs = run.write(picture, rendered)
    if len(outputs) > 1:
        run.info["outputs"] = outputs
    run.timings["output_s"] = time.perf_counter() - write_started
    run.timings["total_s"] = time.perf_counter() - started
    return RenderResult(
        output=outputs[0],
        width=rendered[0].width,
        height=rendered[0].height,
        timings=run.timings,
        info=run.info,
        steps=[s.op for s in job.recipe.steps],
    )


@dataclass
class _Run:
    """One job's render in progress: what every frame's steps share."""

    job: Job
    hooks: Hooks
    extras: list[Image.Image]
    storage: Storage
    prefix: str
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def frame(self, image: Frame, number: int, frames: int) -> Frame:
        """Frame `number` (0-based) of `frames` through the recipe; progress counts
        frames x steps. Classic ops get 16-bit frames as they are, others 8-bit PIL."""
        steps = self.job.recipe.steps
        for index, step in enumerate(steps):
            at = number * len(steps) + index
            if self.hooks.canceled():
                raise JobCanceled(f"canceled before step {index + 1} ({step.op})")
            step_started = time.perf_counter()
            image = self._step(step.op, step.typed_params(), image, at, len(steps) * frames)
            key = f"step{index}_{step.op}_s"
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - step_started
            self.hooks.progress((at + 1) / (len(steps) * frames))
            if self.job.output.keep_steps and number == 0:  # the first frame's steps
                self._put(f".steps/{index:02d}-{step.op}", encode_image(image, self.job.output))
        return image

    def _step(self, op: str, params: Any, image: Frame, at: int, total: int) -> Frame:
        ctx = OpContext(
            lane=self.job.mode,
            seed=self.job.seed,
            extra_inputs=self.extras,
            models=self.hooks.models,
            progress=_step_progress(self.hooks, at, total),
            should_stop=self.hooks.canceled,
            between_steps=self._between_steps,
            batcher=self.hooks.batcher,
        )
        given = prepared_for(op, image, self.info)
        with self.hooks.hold_card():
            edited = self.hooks.implementation(op)(given, params, ctx)
        edited = with_input_alpha(op, given, edited)
        if not isinstance(edited, Image.Image | DeepImage):
            raise TypeError(f"op {op} returned {type(edited).__name__}, not an image")
        self.info.update({f"{op}.{k}": v for k, v in ctx.info.items()})
        return edited

    def _between_steps(self) -> None:
        paused = self.hooks.between_steps()
        if paused:  # recorded: how often and how long previews ran inside this render
            seen = self.info.setdefault("paused_for_previews", {"times": 0, "seconds": 0.0})
            seen["times"] += 1
            seen["seconds"] = round(seen["seconds"] + paused, 4)

    def write(self, picture: Picture, rendered: list[Frame]) -> list[str]:
        """The output file(s): one holding every frame where the format can, else one per
        frame (`<key>.p2`, `<key>.p3`, ...); returns their URIs, the first first."""
        animated = picture.animated and len(rendered) > 1
        files = encode_frames(
            rendered,
            self.job.output,
            fast=self.job.mode is Lane.PREVIEW,
            metadata=picture.metadata,
            durations=picture.durations if animated else (),
            loop=picture.loop if animated else None,
        )
        return [self._put(f".p{n + 1}" if n else "", data) for n, data in enumerate(files)]

    def _put(self, suffix: str, data: bytes) -> str:
        key = output_key(self.job, self.prefix, suffix)
        self.hooks.before_publish()  # raises when canceled or this attempt was superseded
        return self.storage.put(key, data, CONTENT_TYPES[self.job.output.format])
