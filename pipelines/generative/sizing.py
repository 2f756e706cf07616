"""Sizes for a generative edit: the size the model works at and the size returned.

The result keeps the input's aspect ratio and size, scaled down only when its longest
side exceeds the lane's limit. The model works at that size rounded to its multiple
(16 for FLUX and Qwen, 8 for SD), never a square crop; the result is resized back
from the working size so the user gets exactly the aspect they sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from jobs.errors import InputInvalid
from jobs.ops.generative import GenerativeParams
from pipelines.base import OpContext

MIN_SIDE = 16
MAX_ASPECT = 8.0


@dataclass(frozen=True)
class SizePlan:
    work: tuple[int, int]
    """(width, height) the model runs at: multiples of its latent grid."""
    out: tuple[int, int]
    """(width, height) returned: the input's aspect, longest side capped."""

    @property
    def work_area(self) -> int:
        return self.work[0] * self.work[1]


def lane_side(params: GenerativeParams, ctx: OpContext) -> int:
    """Longest side for this lane: previews render smaller."""
    return min(params.preview_side, params.max_side) if ctx.preview else params.max_side


def lane_steps(params: GenerativeParams, ctx: OpContext) -> int:
    return min(params.preview_steps, params.steps) if ctx.preview else params.steps


def check_image(image: Image.Image, what: str = "input image") -> None:
    """Refuse images no edit model can use: too small or too elongated."""
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise InputInvalid(
            f"{what} is {width}x{height}; generative edits need at least {MIN_SIDE} px per side"
        )
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputInvalid(
            f"{what} is {width}x{height}; generative edits take aspect ratios up "
            f"to {MAX_ASPECT:g}:1, crop it first"
        )


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def plan_size(size: tuple[int, int], max_side: int, multiple: int) -> SizePlan:
    """Output size (aspect kept, longest side at most `max_side`) and working size."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    return SizePlan(work=(_round_to(out[0], multiple), _round_to(out[1], multiple)), out=out)


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` as RGB at exactly `size`."""
    rgb = image.convert("RGB")
    return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS)
