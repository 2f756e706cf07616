"""Micro-batching: calls with the same batch key that arrive within a short window run
as one batch, in one thread, and each caller gets its own result back.

The first caller of a key opens a batch and becomes its leader: it waits up to
`window_s` (less once the batch is full), closes the batch and runs the batch function
on every item in arrival order. The others (followers) add their item and wait for
their own result. A later caller of the same key opens the next batch.

Why our own: the batchers we know of serve an async event loop or a model server
(Ray Serve's `@serve.batch`, Triton's dynamic batcher, BentoML's adaptive batching);
a darkroom worker runs each job on its own Python thread (Celery's threads pool), and
the job's thread must stay the one that reports its progress and records its result.
This is one lock and one event per batch.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[list[T]], Sequence[R | BaseException]]
"""Items (in arrival order) -> one outcome per item: its result, or an exception
instance that is raised in that item's caller alone."""


@dataclass
class BatchStats:
    """Counters for metrics and benchmarks; they only grow."""

    batches: int = 0
    """Batch functions run (a batch of one counts)."""
    items: int = 0
    """Items run through them."""
    largest: int = 0
    """The largest batch run so far."""


@dataclass
class _Batch:
    items: list[Any] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: Sequence[Any] = ()
    error: BaseException | None = None


@dataclass
class MicroBatcher:
    """Joins calls of one batch key that arrive within `window_s` seconds, at most
    `max_size` per batch. Thread-safe; one per worker process.

    Raises:
        ValueError: `window_s` < 0 or `max_size` < 1.
    """

    window_s: float
    max_size: int
    peers: Callable[[], int] | None = None
    """How many callers could be in a batch now, the leader included (e.g. the previews
    a worker holds); a leader with no possible peer runs at once, paying no window."""
    stats: BatchStats = field(default_factory=BatchStats)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _open: dict[Hashable, _Batch] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.window_s < 0 or self.max_size < 1:
            raise ValueError(
                f"a micro-batcher needs window_s >= 0 and max_size >= 1, "
                f"not {self.window_s} and {self.max_size}"
            )

    def submit(self, key: Hashable, item: T, run: BatchFunction[T, R]) -> R:
        """Run `item` in the batch of `key`, and return its own outcome.

        `run` is called once per batch, by the leader's thread, with every item of the
        batch; the callers of one key must pass functions that treat items alike (the
        leader's is the one that runs).

        Raises:
            BaseException: what `run` raised (every caller of the batch gets it, a
                copy each), or the exception instance `run` returned for this item.
            RuntimeError: `run` returned a number of outcomes other than of items.
        """
        batch, index = self._join(key, item)
        if index == 0:
            self._lead(key, batch, run)
        else:
            batch.done.wait()
        return self._outcome(batch, index)

    def _join(self, key: Hashable, item: Any) -> tuple[_Batch, int]:
        with self._lock:
            batch = self._open.get(key)
            if batch is None:
                batch = self._open[key] = _Batch()
            batch.items.append(item)
            if len(batch.items) >= self.max_size:
                del self._open[key]  # full: the next caller opens a new batch
                batch.full.set()
            return batch, len(batch.items) - 1

    def _lead(self, key: Hashable, batch: _Batch, run: BatchFunction[Any, Any]) -> None:
        if self.peers is None or self.peers() > 1:
            batch.full.wait(self.window_s)
        with self._lock:
            if self._open.get(key) is batch:
                del self._open[key]
            items = list(batch.items)
            self.stats.batches += 1
            self.stats.items += len(items)
            self.stats.largest = max(self.stats.largest, len(items))
        try:
            outcomes = run(items)
            if len(outcomes) != len(items):
                raise RuntimeError(f"a batch of {len(items)} gave {len(outcomes)} outcomes")
            batch.outcomes = outcomes
        except BaseException as exc:  # every caller of the batch gets it
            batch.error = exc
        finally:
            batch.done.set()

    @staticmethod
    def _outcome(batch: _Batch, index: int) -> Any:
        if batch.error is not None:
            # One exception object raised in several threads would share one traceback.
            raise batch.error if index == 0 else _copied(batch.error)
        outcome = batch.outcomes[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _copied(exc: BaseException) -> BaseException:
    try:
        twin = copy.copy(exc)
    except Exception:  # an exception class that does not copy: raise the one object
        return exc
    twin.__traceback__ = None
    return twin
