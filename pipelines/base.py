"""What every op implementation gets and returns.

An op is a plain callable `(image, params, ctx) -> image`: `image` is a PIL image
(RGB, RGBA or L), `params` the op's typed params from `jobs.ops`, `ctx` the run's
context. Ops check their inputs first and raise a `jobs.errors.JobError` subclass
with a message a user can act on; they never fix bad input silently.

`ModelSource` is the seam between a worker and the ops: where an op finds published
model files and loaded pipelines. The worker's resident-model cache implements it;
`pipelines.faces.FolderModels` serves a plain folder of files for local runs and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from jobs.schema import Lane
from pipelines.batching import MicroBatcher
from storage.deep import DeepImage


def _no_progress(fraction: float) -> None:
    return None


def _no_pause() -> None:
    return None


def _never() -> bool:
    return False


class ModelFiles(Protocol):
    """A source of published model artifacts (files or folders), by `name@version`."""

    def local_path(self, ref: str) -> Path:
        """The local file or folder of `ref` (name, name@version or name@alias).

        Raises:
            jobs.errors.ModelUnavailable: `ref` is not published where this source looks.
        """
        ...


class ModelSource(ModelFiles, Protocol):
    """What ops get as `OpContext.models`: published files, and pipelines loaded once
    per worker process."""

    def get(self, ref: str, lane: Lane | str = Lane.FINAL) -> object:
        """The loaded pipeline for `ref` on this worker's tier, for `lane`; the caller
        checks its class.

        Raises:
            jobs.errors.ModelUnavailable: `ref` is not published, or not for this tier.
            jobs.errors.OutOfMemory: the model does not fit this worker's memory budget.
        """
        ...


@dataclass
class OpContext:
    """The run around one step: lane, seed, progress, cancellation and extras."""

    lane: Lane = Lane.FINAL
    seed: int | None = None
    progress: Callable[[float], None] = _no_progress
    """Fraction of this step done, 0..1; ops with inner loops report it."""
    should_stop: Callable[[], bool] = _never
    """True once the job was canceled; long ops check it between iterations."""
    between_steps: Callable[[], None] = _no_pause
    """Ops with inner loops call it between two steps (a denoising step, a tile). The
    worker's step scheduler (`workers.steps`) may run a waiting preview there, in another
    thread, on the same resident model: an op keeps no per-call state in shared objects
    across it (`pipelines.generative.base.call_view`)."""
    extra_inputs: list[Image.Image] = field(default_factory=list)
    """Further images the job carries (reference faces, multi-image edits)."""
    models: ModelSource | None = None
    """Where ops get model files and resident pipelines; None on a classic-only run."""
    info: dict[str, Any] = field(default_factory=dict)
    """What the op wants recorded in the job result (scores, face boxes)."""
    batcher: MicroBatcher | None = None
    """The worker's preview micro-batcher (`settings.preview_batch_ms` > 0): previews of
    one model and size that arrive within its window run as one batch."""

    @property
    def preview(self) -> bool:
        return self.lane is Lane.PREVIEW


AnyImage = Image.Image | DeepImage
Op = Callable[[Image.Image, Any, OpContext], Image.Image]
DeepOp = Callable[[AnyImage, Any, OpContext], AnyImage]
"""An op that also takes and returns 16-bit `DeepImage`s (the classic family)."""
OpTable = dict[str, Op]
