"""Micro-batched previews: what a batch of edit jobs shares, and how their inputs,
progress and cancellation go through one diffusers call.

Jobs batch when everything but their batched inputs is equal: the pipeline object, the
working size, the steps, the decoder, and every scalar argument (guidance, strength,
...). The batched inputs (`BATCHED_INPUTS`) become lists, one entry per job, and each
job brings its own `torch.Generator`, so its noise comes from its own seed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.errors import JobCanceled
from pipelines.base import OpContext
from pipelines.generative.denoise import StepHook, generator
from pipelines.generative.sizing import SizePlan

BATCHED_INPUTS = frozenset({"prompt", "negative_prompt", "image", "mask_image"})
"""Pipeline arguments that take one entry per image of a batch."""


@dataclass(frozen=True)
class EditJob:
    """One job's render request: its context, size plan, seed and pipeline arguments."""

    ctx: OpContext
    plan: SizePlan
    seed: int
    inputs: dict[str, Any]


def batch_key(pipeline: object, job: EditJob, steps: int, tiny: bool) -> Hashable | None:
    """What jobs must share to run as one batch; None: this job runs alone (an argument
    that cannot be compared, or a batched input that is already a list)."""
    if any(isinstance(job.inputs.get(name), list | tuple) for name in BATCHED_INPUTS):
        return None
    fixed = tuple(sorted((k, v) for k, v in job.inputs.items() if k not in BATCHED_INPUTS))
    # A batched input left out (None) for one job cannot join a list for another.
    absent = tuple(sorted(k for k in BATCHED_INPUTS if k in job.inputs and job.inputs[k] is None))
    key = (pipeline, job.plan.work, steps, tiny, fixed, absent)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def call_inputs(jobs: Sequence[EditJob]) -> dict[str, Any]:
    """The diffusers call's arguments for `jobs`: as they are for one job; lists of the
    batched inputs and of per-job generators for more."""
    first = jobs[0].inputs
    if len(jobs) == 1:
        return {**first, "generator": generator(jobs[0].seed)}
    inputs = {
        name: [job.inputs[name] for job in jobs]
        if name in BATCHED_INPUTS and value is not None
        else value
        for name, value in first.items()
    }
    inputs["generator"] = [generator(job.seed) for job in jobs]
    return inputs


class BatchStepHook(StepHook):
    """`callback_on_step_end` for a batch: every job's progress; the batch stops only
    when every job in it was canceled (`canceled` says which ones were)."""

    def __init__(self, ctxs: Sequence[OpContext], steps: int) -> None:
        super().__init__(ctxs[0], steps)
        self.ctxs = list(ctxs)

    def __call__(
        self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls += 1
        total = getattr(pipe, "num_timesteps", None) or self.steps
        for ctx in self.ctxs:
            ctx.progress(min(1.0, (step + 1) / total))
        if all(ctx.should_stop() for ctx in self.ctxs):
            raise JobCanceled(f"canceled after denoising step {step + 1} of {total}")
        if step + 1 < total:
            self.ctx.between_steps()  # the leader's: the thread that runs the batch
        return tensors

    @staticmethod
    def canceled(ctx: OpContext) -> JobCanceled | None:
        """The outcome of a job canceled while its batch ran on, else None."""
        return JobCanceled("canceled during its batched preview") if ctx.should_stop() else None
