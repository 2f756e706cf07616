"""Which card this worker sees, and which tier that makes it.

Detection asks `nvidia-smi` (no torch import in the worker's main process); with no
NVIDIA GPU visible the worker is a `cpu` tier worker.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.errors import ConfigError
from jobs.tiers import Tier, sorted_tiers, tier_named


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_gb: float


def visible_gpus(timeout_s: float = 5.0) -> list[Gpu]:
    """GPUs `nvidia-smi` lists (respecting CUDA_VISIBLE_DEVICES is the caller's job)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return parse_smi(out)


def parse_smi(text: str) -> list[Gpu]:
    gpus = []
    for line in text.strip().splitlines():
        index, name, memory_mib = (part.strip() for part in line.split(","))
        gpus.append(Gpu(int(index), name, float(memory_mib) / 1024))
    return gpus


def tier_for_gpu(gpu: Gpu, tiers: Sequence[Tier]) -> Tier:
    """The tier whose card list names this GPU, else the largest that its memory covers."""
    gpu_tiers = [t for t in sorted_tiers(tiers) if t.vram_gb > 0]
    for tier in reversed(gpu_tiers):  # "A100" before "A10"
        if any(card.lower() in gpu.name.lower() for card in tier.cards):
            return tier
    fitting = [t for t in gpu_tiers if t.vram_gb <= gpu.memory_gb * 1.05]
    if fitting:
        return fitting[-1]
    return sorted_tiers(tiers)[0]


def choose_tier(
    requested: str, gpu_index: int | None, tiers: Sequence[Tier], visible: str | None = None
) -> tuple[Tier, Gpu | None]:
    """Resolve `--tier` (`auto` or a name) and `--gpu` to a tier and the card to pin.

    `visible` is the caller's CUDA_VISIBLE_DEVICES: nvidia-smi lists every card whatever
    it says, so with no `--gpu` the worker takes the first card it names.

    Raises:
        ConfigError: `--gpu` names no visible card.
        SchemaError: `--tier` names no configured tier.
    """
    gpus = visible_gpus()
    if gpu_index is None and visible:
        first = visible.split(",")[0].strip()
        gpu_index = int(first) if first.isdigit() else None
    gpu = None
    if gpu_index is not None:
        matches = [g for g in gpus if g.index == gpu_index]
        if not matches and gpus:
            raise ConfigError(f"GPU {gpu_index}: no such GPU; visible: {[g.index for g in gpus]}")
        gpu = matches[0] if matches else None
    elif gpus:
        gpu = gpus[0]
    if requested != "auto":
        return tier_named(requested, tiers), gpu
    if gpu is None:
        return sorted_tiers(tiers)[0], None
    return tier_for_gpu(gpu, tiers), gpu
