"""What a worker process holds: settings, tier, its Redis and job store, resident models.

Built lazily in each process after the fork (Redis connections and models must not be
shared with the parent), and once: a task never loads a model or opens a connection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.schema import Lane
from jobs.settings import Settings
from jobs.tiers import Tier
from pipelines.batching import MicroBatcher
from transport.attempts import Attempts
from transport.embedded import connect
from transport.keyspace import Keyspace
from transport.store import JobStore
from workers.steps import StepScheduler

if TYPE_CHECKING:
    from redis import Redis

    from model_store import ModelStore
    from workers.resident import ResidentModels, ResidentStats


@dataclass
class Runtime:
    settings: Settings
    tier: Tier
    redis: Redis
    store: JobStore
    keys: Keyspace
    slots: int = 1
    """Jobs this worker runs at once; CPU renders share the cores between them."""
    steps: StepScheduler | None = None
    """The card's step scheduler when this process serves both lanes (`workers.steps`)."""
    batcher: MicroBatcher | None = None
    """Joins same-model previews into one batch (`settings.preview_batch_ms` > 0, both lanes)."""
    previews_in_hand: int = 0
    """Preview jobs this process's threads are running now (`holding_job`)."""
    _in_hand: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _models: ResidentModels | None = field(default=None, repr=False)
    _store: ModelStore | None = field(default=None, repr=False)
    _attempts: Attempts | None = field(default=None, repr=False)

    @property
    def attempts(self) -> Attempts:
        """Claim, lease and fenced progress of this process's attempts."""
        if self._attempts is None:
            self._attempts = Attempts(
                self.redis,
                self.keys,
                ttl_s=self.settings.job_ttl_s,
                lease_s=self.settings.heartbeat_ttl_s,
            )
        return self._attempts

    @property
    def models(self) -> ResidentModels:
        """The process's resident model cache, created on the first generative job."""
        if self._models is None:
            import torch

            from workers.resident import ResidentModels

            if not torch.cuda.is_available():
                # torch's default (every core per process) oversubscribes a CPU worker
                # with several slots: measured 10-30x slower on 2 cores.
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.slots))
            self._models = ResidentModels.from_settings(self.settings, self.tier)
        return self._models

    @property
    def model_store(self) -> ModelStore:
        """The model store alone (no torch): for CPU ops that read model files."""
        if self._store is None:
            from model_store import ModelStore

            self._store = ModelStore.from_settings(self.settings)
        return self._store

    @contextmanager
    def holding_job(self, lane: Lane) -> Iterator[None]:
        """Count a job of `lane` in this process's hands while it runs."""
        preview = lane is Lane.PREVIEW
        with self._in_hand:
            self.previews_in_hand += preview
        try:
            yield
        finally:
            with self._in_hand:
                self.previews_in_hand -= preview

    def release_models(self) -> None:
        """The calling thread's job is over: the models it used may be evicted again."""
        if self._models is not None:
            self._models.release()

    def load_seconds_here(self) -> float:
        """Seconds the calling thread has spent loading models (0 before any)."""
        return self._models.load_seconds_here() if self._models is not None else 0.0

    def loaded_models(self) -> ResidentModels | None:
        """The resident model cache if a job has needed one yet (never creates it)."""
        return self._models

    def model_stats(self) -> ResidentStats | None:
        """Resident-model statistics for metrics, or None before any model was needed."""
        return self._models.stats if self._models is not None else None


@dataclass(frozen=True)
class RuntimeModels:
    """The `pipelines.base.ModelSource` ops see on a worker: files straight from the
    model store (no torch), pipelines from the resident cache, which (and torch) is
    created only when an op first asks for a pipeline."""

    runtime: Runtime

    def local_path(self, ref: str) -> Path:
        """The verified local folder of `ref`, pulled into this machine's cache.

        Raises:
            jobs.errors.ModelUnavailable: `ref` is not published in the store.
        """
        return self.runtime.model_store.local_path(ref)

    def get(self, ref: str, lane: Lane | str = Lane.FINAL) -> object:
        """The resident pipeline of `ref` (see `ResidentModels.get`).

        Raises:
            jobs.errors.ModelUnavailable: `ref` is not published, or not for this tier.
            jobs.errors.OutOfMemory: it does not fit this worker's memory budget.
        """
        rt = self.runtime
        if rt.steps is not None and Lane(lane) is Lane.PREVIEW and not rt.models.holds(ref, lane):
            rt.steps.demote()  # a preview that loads does not overtake a final
        return rt.models.get(ref, lane)


_runtime: tuple[int, Runtime] | None = None


def runtime(settings: Settings, tier: Tier, slots: int = 1, *, both_lanes: bool = False) -> Runtime:
    """This process's runtime (a fresh one in a forked child); `both_lanes`: this process
    serves the preview and final lanes of its card, through one step scheduler."""
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        keys = Keyspace(settings.key_prefix)
        redis = connect(settings)
        store = JobStore(redis, keys, ttl_s=settings.job_ttl_s)
        steps = StepScheduler(settings.max_overtakes) if both_lanes else None
        rt = Runtime(settings, tier, redis, store, keys, slots=slots, steps=steps)
        if both_lanes and settings.preview_batch_ms:
            # previews run on the threads of `preview_slots`: no more can meet in a batch
            rt.batcher = MicroBatcher(
                settings.preview_batch_ms / 1000,
                settings.preview_slots,
                peers=lambda: rt.previews_in_hand,
            )
        _runtime = (os.getpid(), rt)
    return _runtime[1]


def current() -> Runtime | None:
    """This process's runtime if it has one (metrics read it after each task)."""
    if _runtime is None or _runtime[0] != os.getpid():
        return None
    return _runtime[1]
