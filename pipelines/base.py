"""What every op implementation gets and returns.

An op is a plain callable `(image, params, ctx) -> image`: `image` is a PIL image
(RGB, RGBA or L), `params` the op's typed params from `jobs.ops`, `ctx` the run's
context. Ops check their inputs first and raise a `jobs.errors.JobError` subclass
with a message a user can act on; they never fix bad input silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from jobs.schema import Lane
from storage.deep import DeepImage


def _no_progress(fraction: float) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class OpContext:
    """The run around one step: lane, seed, progress, cancellation and extras."""

    lane: Lane = Lane.FINAL
    seed: int | None = None
    progress: Callable[[float], None] = _no_progress
    """Fraction of this step done, 0..1; ops with inner loops report it."""
    should_stop: Callable[[], bool] = _never
    """True once the job was canceled; long ops check it between iterations."""
    extra_inputs: list[Image.Image] = field(default_factory=list)
    """Further images the job carries (reference faces, multi-image edits)."""
    models: Any = None
    """Where generative ops get resident models; None on a classic-only worker."""
    info: dict[str, Any] = field(default_factory=dict)
    """What the op wants recorded in the job result (scores, face boxes)."""

    @property
    def preview(self) -> bool:
        return self.lane is Lane.PREVIEW


AnyImage = Image.Image | DeepImage
Op = Callable[[Image.Image, Any, OpContext], Image.Image]
DeepOp = Callable[[AnyImage, Any, OpContext], AnyImage]
"""An op that also takes and returns 16-bit `DeepImage`s (the classic family)."""
OpTable = dict[str, Op]
