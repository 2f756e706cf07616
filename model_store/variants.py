"""Default variants and the `--variant` syntax.

The default rule, when a publish names no variants (P = parameters of every weight
file, from the safetensors headers; other weight files count as 16-bit):

- memory of a kind = P x bytes per parameter x 1.2, in GiB (the 20 % covers
  activations, the CUDA context and workspaces): fp32 4 B, bf16 / fp16 2 B,
  fp8 / int8 1 B, nf4 0.5 B.
- one `fp32` variant for the CPU tiers (tiers with no VRAM; `["cpu"]` if none).
- each GPU tier, smallest first, takes the first kind of bf16, fp16, fp8, int8, nf4
  that it lists among its precisions and whose memory fits its VRAM; tiers that
  chose the same kind share one variant. A tier nothing fits gets no variant.

`--variant NAME[:key=value]...` builds one variant: `kind`, `tiers` (comma list),
`memory_gb`, `compile`, `files` (comma list of paths in the folder); any other key
goes to `options`. Omitted: kind from the name (`int8` -> int8_weight_only, `trt-*`
-> tensorrt), memory and tiers by the rule above. Example:
`fp8:tiers=a10,a100:memory_gb=20`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import SchemaError
from jobs.tiers import Tier
from model_store.manifest import KINDS, FileEntry, Variant, check_name

OVERHEAD = 1.2
BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8_weight_only": 1,
    "nf4": 0.5,
    "onnx": 4,  # `darkroom models export-onnx` writes float32 weights
    "tensorrt": 2,
}
PRECISION_OF = {
    "bf16": "bf16",
    "fp16": "fp16",
    "fp8": "fp8",
    "int8_weight_only": "int8",
    "nf4": "nf4",
}
GPU_PREFERENCE = ("bf16", "fp16", "fp8", "int8_weight_only", "nf4")
SHORT_NAME = {"int8_weight_only": "int8"}


def memory_gb(params: int, kind: str) -> float:
    """GiB a `kind` variant of `params` parameters needs resident, rounded up to 1 MiB-ish."""
    raw = params * BYTES_PER_PARAM[kind] * OVERHEAD / 2**30
    return math.ceil(raw * 1000) / 1000


def cpu_tiers(tiers: Sequence[Tier]) -> list[str]:
    """Names of the local tiers without VRAM (a hosted tier runs no model of ours)."""
    return [t.name for t in tiers if t.vram_gb == 0 and not t.hosted] or ["cpu"]


def fits(tier: Tier, kind: str, params: int) -> bool:
    precision = PRECISION_OF.get(kind)
    return precision in tier.precisions and memory_gb(params, kind) <= tier.vram_gb


def default_variants(params: int, tiers: Sequence[Tier]) -> list[Variant]:
    """Variants by the rule in this module's docstring."""
    chosen: dict[str, list[str]] = {}
    for tier in sorted((t for t in tiers if t.vram_gb > 0), key=lambda t: t.vram_gb):
        kind = next((k for k in GPU_PREFERENCE if fits(tier, k, params)), None)
        if kind is not None:
            chosen.setdefault(kind, []).append(tier.name)
    variants = [
        Variant(
            name="fp32", kind="fp32", tiers=cpu_tiers(tiers), memory_gb=memory_gb(params, "fp32")
        )
    ]
    for kind in GPU_PREFERENCE:
        if kind in chosen:
            name = SHORT_NAME.get(kind, kind)
            variants.append(
                Variant(name=name, kind=kind, tiers=chosen[kind], memory_gb=memory_gb(params, kind))
            )
    return variants


@dataclass(frozen=True)
class VariantSpec:
    """A `--variant` as typed: what is left out is filled in from the folder at publish."""

    name: str
    kind: str
    tiers: list[str] | None = None
    memory_gb: float | None = None
    compile: bool = False
    files: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, params: int, entries: Sequence[FileEntry], tiers: Sequence[Tier]) -> Variant:
        """The variant for a folder of `params` parameters holding `entries`.

        Raises:
            SchemaError: the spec names files the folder does not hold.
        """
        by_path = {e.path: e for e in entries}
        missing = [p for p in self.files if p not in by_path]
        if missing:
            raise SchemaError(f"variant {self.name}: files not in the folder: {', '.join(missing)}")
        return Variant(
            name=self.name,
            kind=self.kind,
            tiers=self.tiers if self.tiers is not None else self._fitting_tiers(params, tiers),
            memory_gb=self.memory_gb
            if self.memory_gb is not None
            else memory_gb(params, self.kind),
            compile=self.compile,
            files=[by_path[p] for p in self.files],
            options=self.options,
        )

    def _fitting_tiers(self, params: int, tiers: Sequence[Tier]) -> list[str]:
        if self.kind == "fp32":
            return cpu_tiers(tiers)
        found = [t.name for t in tiers if fits(t, self.kind, params)]
        if not found:
            raise SchemaError(f"variant {self.name}: no tier fits it; give tiers=...")
        return found


def _kind_from_name(name: str) -> str | None:
    if name in KINDS:
        return name
    if name == "int8":
        return "int8_weight_only"
    if name.startswith("trt"):
        return "tensorrt"
    return None


def _scalar(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SchemaError(f"--variant {key}={text!r}: expected a number") from None


def parse_variant(spec: str) -> VariantSpec:
    """`fp8:tiers=a10,a100:memory_gb=20` -> a VariantSpec (see the module docstring).

    Raises:
        SchemaError: no kind=, or a part is not key=value.
    """
    name, *pairs = spec.strip().split(":")
    check_name(name, "variant name")
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise SchemaError(f"--variant {spec!r}: {pair!r} is not key=value")
        fields[key.strip()] = value.strip()
    kind = fields.pop("kind", None) or _kind_from_name(name)
    if kind is None or kind not in KINDS:
        raise SchemaError(f"--variant {spec!r}: give kind=, one of {', '.join(KINDS)}")
    tiers = fields.pop("tiers", None)
    memory = fields.pop("memory_gb", None)
    files = fields.pop("files", "")
    return VariantSpec(
        name=name,
        kind=kind,
        tiers=[t.strip() for t in tiers.split(",") if t.strip()] if tiers else None,
        memory_gb=_number("memory_gb", memory) if memory is not None else None,
        compile=_scalar(fields.pop("compile", "false")) is True,
        files=[f.strip() for f in files.split(",") if f.strip()],
        options={k: _scalar(v) for k, v in fields.items()},
    )
