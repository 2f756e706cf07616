"""The resident-model cache: models loaded once per worker process, bounded by memory.

`ResidentModels.get(ref, lane)` returns a loaded pipeline, loading it on first use.
What is resident is bounded by a memory budget (the card's memory by default): a
model whose variant would push the sum of resident `memory_gb` over the budget
evicts the least recently used ones first. A worker alternating between models that
fit together never reloads either. Built after fork, in the process that uses it.

Threads of one process share it (`darkroom worker --lane both`: previews and finals of
one card): a model a running job has asked for is pinned to that job's thread until
`release()`, and is never evicted under it; a load that would need a pinned model's
memory waits for it to be released.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.errors import OutOfMemory
from jobs.schema import Lane
from jobs.settings import Settings
from jobs.tiers import Tier
from model_store import LocalModel, Manifest, ModelStore, Variant

HOST_RAM_SHARE = 0.5  # of host memory, for a worker with no GPU and no configured budget


@dataclass
class ResidentStats:
    """Counters a metrics exporter reads; they only grow."""

    loads: int = 0
    load_seconds: float = 0.0
    hits: int = 0
    evictions: int = 0
    last_load_seconds: float = 0.0


@dataclass
class Resident:
    key: str
    """`name@version:variant`"""
    model: Any
    memory_gb: float
    """What the manifest says the variant (with its components) needs: the budget's unit."""
    tensor_bytes: int = 0
    """Bytes of the torch parameters and buffers it holds, measured at load (0: none
    found, e.g. an onnxruntime or TensorRT runner)."""


@dataclass(frozen=True)
class _Resolved:
    manifest: Manifest
    at: float


class ResidentModels:
    """Loaded models of one worker process, least recently used first out."""

    def __init__(
        self,
        store: ModelStore,
        tier: Tier | str,
        device: str,
        budget_gb: float,
        *,
        preferred: Mapping[str, Sequence[str]] | None = None,
        resolve_ttl_s: float = 30.0,
        pin_wait_s: float = 600.0,
    ) -> None:
        self.store = store
        self.tier = tier.name if isinstance(tier, Tier) else tier
        self.device = device
        self.budget_gb = budget_gb
        self.preferred = {lane: list(names) for lane, names in (preferred or {}).items()}
        """Lane -> variant names or kinds to pick first, e.g. {"preview": ["fp8"]}."""
        self.resolve_ttl_s = resolve_ttl_s
        self.pin_wait_s = pin_wait_s
        """How long a load waits for models other running jobs use before OutOfMemory."""
        self.stats = ResidentStats()
        self._resident: OrderedDict[str, Resident] = OrderedDict()
        self._resolved: dict[str, _Resolved] = {}
        self._load_s: dict[int, float] = {}
        """thread id -> seconds that thread has spent loading models"""
        self._pins: dict[int, set[str]] = {}
        """thread id -> keys its running job has asked for"""
        self._lock = threading.Condition()

    @classmethod
    def from_settings(cls, settings: Settings, tier: Tier | str) -> ResidentModels:
        """This process's cache: its device, and a budget from the settings, else the
        visible GPU's memory, else a share of host RAM."""
        device, device_gb = _device_and_memory()
        budget = settings.model_budget_gb or device_gb
        return cls(ModelStore.from_settings(settings), tier, device, budget)

    def get(self, ref: str, lane: Lane | str = Lane.FINAL) -> Any:
        """The loaded pipeline for `ref` (name, name@version or name@alias) on this tier.

        Raises:
            ModelUnavailable: `ref` is not published, or has no variant for this tier.
            OutOfMemory: the model (with its components) needs more than this worker's
                memory budget, or loading it ran out of GPU memory.
        """
        with self._lock:
            manifest, variant, key = self._variant(ref, lane)
            self._pins.setdefault(threading.get_ident(), set()).add(key)
            found = self._resident.get(key)
            if found is not None:
                self._resident.move_to_end(key)
                self.stats.hits += 1
                return found.model
            return self._load(key, manifest, variant).model

    def load_seconds_here(self) -> float:
        """Seconds the calling thread has spent loading models (a job's own loads, when
        threads of one process run several jobs)."""
        return self._load_s.get(threading.get_ident(), 0.0)

    def release(self) -> None:
        """The calling thread's job is over: unpin the models it asked for."""
        with self._lock:
            self._pins.pop(threading.get_ident(), None)
            self._lock.notify_all()

    def holds(self, ref: str, lane: Lane | str = Lane.FINAL) -> bool:
        """Whether `ref`'s variant for `lane` is loaded now (never loads; resolving an
        alias may read the store's manifest once per `resolve_ttl_s`).

        Raises:
            ModelUnavailable: `ref` is not published in the store.
        """
        with self._lock:
            return self._variant(ref, lane)[2] in self._resident

    def resident_refs(self) -> list[str]:
        """The refs jobs asked for (as they named them: `kontext@stable`) whose model is
        loaded now, most recently used first: what a worker advertises in its heartbeat."""
        with self._lock:
            return self._refs_of(reversed(self._resident))

    def refs_after_loading(self, refs: Sequence[str], lane: Lane | str = Lane.FINAL) -> list[str]:
        """The refs (as `resident_refs` names them, plus `refs`) that will be resident
        once `refs` are loaded: least recently used ones out while the manifests' memory
        exceeds the budget, as `get` will do. What a worker advertises when it starts a
        job it must load for.

        Raises:
            ModelUnavailable: one of `refs` is not published in the store.
        """
        with self._lock:
            order = list(self._resident)  # least recently used first
            memory = {key: r.memory_gb for key, r in self._resident.items()}
            for ref in refs:
                _, variant, key = self._variant(ref, lane)
                if key in memory:
                    order.remove(key)
                else:
                    memory[key] = variant.memory_gb
                    while order and sum(memory[k] for k in order) + memory[key] > self.budget_gb:
                        order.pop(0)
                order.append(key)
            after = self._refs_of(reversed(order))
            return [*refs, *(ref for ref in after if ref not in refs)]

    def local_path(self, ref: str) -> Path:
        """The verified local folder of `ref` (name, name@version or name@alias), pulled
        into this machine's cache if it is not there yet.

        Raises:
            ModelUnavailable: `ref` is not published in the store.
        """
        return self.store.local_path(ref)

    def resident(self) -> list[str]:
        """`name@version:variant` of every loaded model, most recently used first."""
        with self._lock:
            return list(reversed(self._resident))

    def resident_bytes(self) -> int:
        """Measured bytes of the torch tensors of every loaded model (one copy each)."""
        with self._lock:
            return sum(r.tensor_bytes for r in self._resident.values())

    @property
    def used_gb(self) -> float:
        return sum(r.memory_gb for r in self._resident.values())

    def clear(self) -> None:
        """Drop every resident model (a worker shutting down, or a test)."""
        with self._lock:
            while self._resident:
                self._evict_oldest()

    def _variant(self, ref: str, lane: Lane | str) -> tuple[Manifest, Variant, str]:
        """`ref`'s manifest, its variant for this tier and `lane`, and its cache key
        `name@version:variant`."""
        manifest = self._resolve(ref)
        variant = manifest.variant_for(self.tier, self.preferred.get(str(Lane(lane)), []))
        return manifest, variant, f"{manifest.ref}:{variant.name}"

    def _refs_of(self, keys: Iterable[str]) -> list[str]:
        """The refs jobs named (`kontext@stable`) that resolved to `keys`, in their order."""
        named = [(ref, r.manifest.ref) for ref, r in self._resolved.items()]
        return [ref for key in keys for ref, name in named if key.startswith(f"{name}:")]

    def _resolve(self, ref: str) -> Manifest:
        # Aliases move (promote, rollback): re-read them now and then, not on every job.
        now = time.monotonic()
        cached = self._resolved.get(ref)
        if cached is None or now - cached.at > self.resolve_ttl_s:
            cached = _Resolved(self.store.resolve(ref), now)
            self._resolved[ref] = cached
        return cached.manifest

    def _load(self, key: str, manifest: Manifest, variant: Variant) -> Resident:
        components = {role: self.store.pull(ref) for role, ref in manifest.components.items()}
        need = variant.memory_gb + sum(self._memory_of(c) for c in components.values())
        if need > self.budget_gb:
            raise OutOfMemory(
                f"model {manifest.ref} ({variant.describe()}) needs {need:g} GB resident; this "
                f"worker's budget is {self.budget_gb:g} GB: run it on a larger tier"
            )
        deadline = time.monotonic() + self.pin_wait_s
        while self._resident and self.used_gb + need > self.budget_gb:
            if self._evict_oldest(unpinned=True):
                continue
            # every candidate is in use by another running job: wait for one to end
            if not self._lock.wait(timeout=max(0.0, deadline - time.monotonic())):
                raise OutOfMemory(
                    f"model {manifest.ref} needs {need:g} GB; the rest of this worker's "
                    f"{self.budget_gb:g} GB stayed in use by other jobs for "
                    f"{self.pin_wait_s:g} s: run it on a larger tier"
                )
        started = time.perf_counter()
        model = _build(self.store.pull(manifest.ref), variant, self.device, components)
        took = time.perf_counter() - started
        me = threading.get_ident()
        self._load_s[me] = self._load_s.get(me, 0.0) + took
        self.stats.loads += 1
        self.stats.load_seconds += took
        self.stats.last_load_seconds = took
        resident = Resident(key, model, need, tensor_bytes(model))
        self._resident[key] = resident
        return resident

    def _memory_of(self, component: LocalModel) -> float:
        fitting = [v for v in component.manifest.variants if self.tier in v.tiers]
        return fitting[0].memory_gb if fitting else 0.0

    def _evict_oldest(self, *, unpinned: bool = False) -> bool:
        """Drop the least recently used model (`unpinned`: that no other running job
        holds); False when there is none to drop."""
        pinned: set[str] = set()
        if unpinned:
            me = threading.get_ident()
            pinned = {k for thread, keys in self._pins.items() if thread != me for k in keys}
        key = next((k for k in self._resident if k not in pinned), None)
        if key is None:
            return False
        evicted = self._resident.pop(key)
        del evicted
        self.stats.evictions += 1
        _release_memory(self.device)
        return True


def _build(
    local: LocalModel, variant: Variant, device: str, components: Mapping[str, LocalModel]
) -> Any:
    # Imported here: torch and diffusers load on the first generative job, not at start-up.
    from pipelines.generative import load_model
    from pipelines.generative.denoise import gpu_memory_guard

    with gpu_memory_guard(f"loading {local.manifest.ref}", "run it on a larger tier"):
        return load_model(local, variant, device, components)


def tensor_bytes(model: Any, depth: int = 3) -> int:
    """Bytes of the distinct torch parameters and buffers reachable from `model` through
    its attributes (`depth` levels: a pipeline object, its diffusers pipeline, its
    modules); shared tensors are counted once. 0 when torch is not loaded or none is
    found."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    modules: list[Any] = []
    seen: set[int] = set()
    frontier = [model]
    for _ in range(depth + 1):
        following = []
        for obj in frontier:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, torch.nn.Module):
                modules.append(obj)
                continue
            fields = obj if isinstance(obj, dict) else getattr(obj, "__dict__", {})
            values = fields.values()
            following += [v for v in values if not isinstance(v, str | bytes | int | float)]
        frontier = following
    storages: dict[int, int] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            _add_storages(tensor, storages)
    return sum(storages.values())


def _add_storages(tensor: Any, storages: dict[int, int]) -> None:
    """Record `tensor`'s storage (data pointer -> bytes); a wrapper subclass (torchao's
    quantized weights) by the plain tensors it holds."""
    try:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    except RuntimeError:
        if not hasattr(tensor, "__tensor_flatten__"):
            storages[id(tensor)] = tensor.numel() * tensor.element_size()
            return
        names, _ = tensor.__tensor_flatten__()
        for name in names:
            _add_storages(getattr(tensor, name), storages)


def _release_memory(device: str) -> None:
    # On a GPU the next model needs the memory now: break reference cycles and hand
    # the cached blocks back. On CPU refcounting frees the tensors, and a full
    # collection (~0.3 s with diffusers loaded) would cost more than tiny loads.
    if device.startswith("cuda"):
        import torch

        gc.collect()
        torch.cuda.empty_cache()


def _device_and_memory() -> tuple[str, float]:
    """("cuda", the card's GiB) when a GPU is visible, else ("cpu", a share of host RAM)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_properties(0).total_memory / 2**30
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "cpu", host * HOST_RAM_SHARE
