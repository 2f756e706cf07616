"""What every denoising loop shares: the seed, the per-step hook and OOM handling."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from jobs.errors import JobCanceled, OutOfMemory
from pipelines.base import OpContext

MAX_SEED = 2**63 - 1


def job_seed(ctx: OpContext) -> int:
    """The job's seed, or a fresh one recorded in the result so the render can be repeated."""
    seed = ctx.seed if ctx.seed is not None else secrets.randbelow(MAX_SEED)
    ctx.info["seed"] = seed
    return seed


def generator(seed: int) -> torch.Generator:
    # A CPU generator draws the same noise whatever device the model runs on, so a
    # seed gives the same image on every worker running the same variant.
    return torch.Generator(device="cpu").manual_seed(seed)


class StepHook:
    """diffusers' `callback_on_step_end`: reports progress, stops a canceled job, and
    lets the worker run a waiting preview between two steps (`OpContext.between_steps`)."""

    def __init__(self, ctx: OpContext, steps: int) -> None:
        self.ctx = ctx
        self.steps = steps
        self.calls = 0

    def __call__(
        self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls += 1
        total = getattr(pipe, "num_timesteps", None) or self.steps
        self.ctx.progress(min(1.0, (step + 1) / total))
        if self.ctx.should_stop():
            raise JobCanceled(f"canceled after denoising step {step + 1} of {total}")
        # after the last step too: the VAE decode that follows is a step of its own
        self.ctx.between_steps()
        return tensors


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@contextmanager
def gpu_memory_guard(
    what: str, hint: str = "try a smaller max_side, or a larger tier"
) -> Iterator[None]:
    """Turn a CUDA out-of-memory error into `OutOfMemory`, which may retry on a larger tier."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _is_oom(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(f"{what} ran out of GPU memory; {hint}") from None
