"""What a published model is: its files with sha256, its per-tier variants, its origin.

A manifest is immutable once published under `name@version`. Workers read it to pick
the variant their tier runs (`Manifest.variant_for`) and the model cache reads it to
verify every byte it pulls.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobs.errors import ModelUnavailable, SchemaError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MANIFEST_FORMAT = 1

# Loader keys a variant may name; `pipelines` maps each to the code that loads it.
KINDS = ("fp32", "bf16", "fp16", "fp8", "int8_weight_only", "nf4", "onnx", "tensorrt")


def check_name(value: str, what: str) -> str:
    """`value` if it is a valid model name, version or alias; else a SchemaError.

    Raises:
        SchemaError: `value` is not 1-128 letters, digits, '.', '_' or '-'.
    """
    if not NAME_PATTERN.match(value) or value in (".", ".."):
        raise SchemaError(
            f"{what} {value!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class ModelRef:
    """`name`, `name@version` or `name@alias`; `selector` is None for a bare name."""

    name: str
    selector: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        name, sep, selector = ref.strip().partition("@")
        check_name(name, "model name")
        if not sep:
            return cls(name)
        return cls(name, check_name(selector, "version or alias"))

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}" if self.selector else self.name


class FileEntry(BaseModel):
    """One file of a model, by its path inside the model folder."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative(cls, path: str) -> str:
        parts = path.split("/")
        if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"file path {path!r} must be relative, '/'-separated, without '..'")
        return path


class Variant(BaseModel):
    """One way to run the model (a precision, an ONNX export, a TensorRT engine) on some tiers."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    tiers: list[str]
    memory_gb: float = Field(ge=0)
    compile: bool = False
    files: list[FileEntry] = Field(default_factory=list)
    """Artifacts only this variant uses (also listed in the manifest's files)."""
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_name(name, "variant name")

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"variant kind {kind!r} is not one of {', '.join(KINDS)}")
        return kind

    def describe(self) -> str:
        return f"{self.name} ({self.kind}, {self.memory_gb:g} GB) for {', '.join(self.tiers)}"


class Manifest(BaseModel):
    """A published model version: everything a worker needs to fetch, check and load it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: int = MANIFEST_FORMAT
    name: str
    version: str
    pipeline_class: str
    license: str | None = None
    source: str | None = None
    files: list[FileEntry]
    variants: list[Variant]
    created_at: float
    components: dict[str, str] = Field(default_factory=dict)
    """Role -> model ref of models this one is used with, e.g. a tiny preview decoder."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def digest(self) -> str:
        """sha256 of the file list: equal digests mean byte-identical artifacts."""
        rows = sorted((f.path, f.sha256, f.size) for f in self.files)
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def same_release(self, other: Manifest) -> bool:
        """True when `other` publishes the same thing (only the timestamp may differ)."""
        mine = self.model_dump(exclude={"created_at", "source"})
        theirs = other.model_dump(exclude={"created_at", "source"})
        return bool(mine == theirs)

    def variant_for(self, tier: str, preferred: list[str] | None = None) -> Variant:
        """The variant to run on `tier`: the first of `preferred` (names or kinds) that is
        meant for the tier, else the first such variant in manifest order.

        Raises:
            ModelUnavailable: no variant of this model is meant for `tier`.
        """
        fitting = [v for v in self.variants if tier in v.tiers]
        for wanted in preferred or []:
            for variant in fitting:
                if wanted in (variant.name, variant.kind):
                    return variant
        if fitting:
            return fitting[0]
        known = "; ".join(v.describe() for v in self.variants) or "none"
        raise ModelUnavailable(
            f"model {self.ref} has no variant for tier {tier!r} (it has: {known}); "
            f"publish a version with `--variant NAME:tiers={tier}` or run it on another tier"
        )

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        """The manifest in `raw` (JSON bytes) read from `where` (for the message).

        Raises:
            ModelUnavailable: `raw` is not a valid manifest; `where` names it.
        """
        try:
            return cls.model_validate_json(raw)
        except ValueError as exc:
            raise ModelUnavailable(f"manifest {where} is unreadable: {exc}") from None
