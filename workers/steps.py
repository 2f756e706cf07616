"""The step scheduler: one card's compute shared by the preview and final lanes of one
model-owning process, handed out a step at a time.

A final render is a sequence of steps (denoising steps through diffusers'
`callback_on_step_end`, tiles of a tiled op, or the whole op for a classic one); its
thread holds the card for a step and calls `between_steps()` after it. There, any
waiting preview goes first, on the same resident model, and the final resumes where it
was, with its own scheduler state and generator: the output is bit-identical to an
uninterrupted render (`pipelines.generative.base.call_view`).

The rules, with `max_overtakes` = K:
- previews share the card with each other (a micro-batch runs as one) and exclude
  finals; finals share it with each other (`--concurrency` slots) and exclude previews;
- a preview that arrives while a final computes waits for that step to end, never
  longer: it waits one step plus its own work;
- while a final waits between two steps, at most K previews start ahead of it; then it
  runs its next step before any further preview. A final is never starved: each of its
  steps waits at most for K previews' work;
- a preview whose model is not resident (it would load, seconds) waits like a final.

Why our own: no scheduler we know of (Triton, Ray Serve, BentoML, ComfyUI) hands a
resident model to other requests between the denoising steps of a running one; this is
a small monitor (one lock, one condition) over Python threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from jobs.schema import Lane

DEFAULT_MAX_OVERTAKES = 4


@dataclass
class StepStats:
    """Counters for metrics and benchmarks; they only grow."""

    yields: int = 0
    """Times a final stepped aside between two steps for waiting previews."""
    overtakes: int = 0
    """Previews that started while a final waited between two steps."""
    yielded_s: float = 0.0
    """Seconds finals spent waiting between steps for previews."""


@dataclass
class StepScheduler:
    """A class-exclusive lock over one card: previews, or finals, never both at once;
    previews first, at most `max_overtakes` of them ahead of a final per step.

    Thread-safe; one per model-owning worker process (`workers.runtime.Runtime`).
    """

    max_overtakes: int = DEFAULT_MAX_OVERTAKES
    stats: StepStats = field(default_factory=StepStats)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _previews_running: int = 0
    _previews_waiting: int = 0
    _finals_running: int = 0
    _finals_waiting: int = 0
    _overtaken: int = 0
    """Previews started since a final last resumed while finals waited."""
    _preview_threads: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.max_overtakes < 1:
            raise ValueError(f"max_overtakes must be >= 1, not {self.max_overtakes}")

    @contextmanager
    def holding(self, lane: Lane, *, resident: bool = True) -> Iterator[None]:
        """Hold the card for one op of a job of `lane` (a final steps aside inside it at
        every `between_steps()`); `resident=False`: a preview that will load its model,
        admitted like a final."""
        me = threading.get_ident()
        if lane is Lane.PREVIEW and resident:
            self._start_preview()
            with self._cond:
                self._preview_threads.add(me)
        else:
            self._start_final()
        try:
            yield
        finally:
            with self._cond:
                if me in self._preview_threads:
                    self._preview_threads.discard(me)
                    self._previews_running -= 1
                else:
                    self._finals_running -= 1
                self._cond.notify_all()

    def demote(self) -> None:
        """The calling thread holds the card as a preview and is about to load a model
        (seconds): from now on it holds it like a final (a final waiting between two
        steps is not kept waiting for a load). No-op for any other thread."""
        me = threading.get_ident()
        with self._cond:  # give the card back as a preview...
            if me not in self._preview_threads:
                return
            self._preview_threads.discard(me)
            self._previews_running -= 1
            self._cond.notify_all()
        self._start_final()  # ...and take it again as a final

    def between_steps(self) -> float:
        """Called by a final's thread between two of its steps: run waiting previews
        (at most `max_overtakes`), then resume. Returns the seconds it stepped aside:
        0.0 at once when no preview waits, and on a preview's thread (previews never
        step aside; its count is not a final's)."""
        with self._cond:
            if not self._previews_waiting or threading.get_ident() in self._preview_threads:
                return 0.0
            started = time.perf_counter()
            self.stats.yields += 1
            self._finals_running -= 1
            self._cond.notify_all()
        self._start_final()
        paused = time.perf_counter() - started
        self.stats.yielded_s += paused
        return paused

    @property
    def previews_waiting(self) -> int:
        return self._previews_waiting

    def _start_preview(self) -> None:
        with self._cond:
            self._previews_waiting += 1
            self._cond.wait_for(self._preview_may_start)
            self._previews_waiting -= 1
            self._previews_running += 1
            if self._finals_waiting:
                self._overtaken += 1
                self.stats.overtakes += 1

    def _start_final(self) -> None:
        with self._cond:
            self._finals_waiting += 1
            self._cond.wait_for(self._final_may_start)
            self._finals_waiting -= 1
            self._finals_running += 1
            self._overtaken = 0
            self._cond.notify_all()

    def _preview_may_start(self) -> bool:
        if self._finals_running:
            return False
        return not self._finals_waiting or self._overtaken < self.max_overtakes

    def _final_may_start(self) -> bool:
        if self._previews_running:
            return False
        return not self._previews_waiting or self._overtaken >= self.max_overtakes
