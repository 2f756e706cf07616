"""Tiers (card classes), lanes, queue names and routing.

A queue is `<tier>.<lane>`, e.g. `a10.preview`. Routing picks the smallest tier
that can run every step of a recipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.errors import SchemaError
from jobs.ops.base import get_op
from jobs.schema import Lane, Recipe

__all__ = ["DEFAULT_TIERS", "Lane", "Tier", "queue_name", "route"]


class Tier(BaseModel):
    """A class of worker: its memory, the precisions its variants run, its cards."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    vram_gb: float = Field(ge=0, description="0 for the CPU tier")
    precisions: tuple[str, ...] = ()
    cards: tuple[str, ...] = Field((), description="GPU name fragments that map to this tier")
    hosted: bool = Field(
        False, description="a remote provider renders (Nano Banana); routing picks it last"
    )

    def can_run(self, op_name: str, params: dict[str, Any] | None = None) -> bool:
        needs = get_op(op_name).needs_of(params or {})
        if needs.cpu:
            return True
        return any(
            precision in self.precisions and self.vram_gb >= gb
            for precision, gb in needs.vram_gb.items()
        )


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(name="cpu", vram_gb=0, precisions=("fp32", "int8")),
    Tier(
        name="edge",
        vram_gb=8,
        precisions=("fp16", "int8", "nf4"),
        cards=("RTX 3060", "RTX 4060", "RTX A2000", "RTX 2000", "RTX 3070", "RTX 4070", "T4"),
    ),
    Tier(
        name="a10",
        vram_gb=24,
        precisions=("fp16", "bf16", "fp8", "int8", "nf4"),
        cards=("A10", "L4", "RTX 6000", "RTX 4090", "RTX 3090", "L40"),
    ),
    Tier(
        name="a100",
        vram_gb=80,
        precisions=("bf16", "fp16", "fp8", "int8", "nf4"),
        cards=("A100", "H100", "H200", "H800", "A800", "B200", "GH200"),
    ),
    # Gemini 2.5 Flash Image through Google's API: `gemini_edit`, and overflow (jobs.ops.hosted).
    Tier(name="hosted", vram_gb=0, precisions=("hosted",), hosted=True),
)


# The tiers that run on darkroom's own machines (what deploy/ ships workers for).
LOCAL_TIERS: tuple[Tier, ...] = tuple(t for t in DEFAULT_TIERS if not t.hosted)


def queue_name(tier: str | Tier, lane: str | Lane) -> str:
    name = tier.name if isinstance(tier, Tier) else tier
    return f"{name}.{Lane(lane).value}"


def all_queues(tiers: Iterable[Tier]) -> list[str]:
    return [queue_name(t, lane) for t in tiers for lane in Lane]


def sorted_tiers(tiers: Iterable[Tier]) -> list[Tier]:
    """Smallest first; hosted tiers after every local one (they cost money per image)."""
    return sorted(tiers, key=lambda t: (t.hosted, t.vram_gb))


def route(recipe: Recipe, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier:
    """The smallest tier that can run every step of `recipe`.

    Raises:
        SchemaError: no configured tier can run every step.
    """
    for tier in sorted_tiers(tiers):
        if all(tier.can_run(step.op, step.params) for step in recipe.steps):
            return tier
    ops = ", ".join(step.op for step in recipe.steps)
    raise SchemaError(
        f"no tier can run every step of [{ops}]; configured: " + ", ".join(t.name for t in tiers)
    )


def tier_named(name: str, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier:
    """The configured tier called `name`.

    Raises:
        SchemaError: no tier of that name is configured.
    """
    for tier in tiers:
        if tier.name == name:
            return tier
    raise SchemaError(f"unknown tier {name!r}; configured: " + ", ".join(t.name for t in tiers))


def next_larger(tier: Tier, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier | None:
    larger = [t for t in sorted_tiers(tiers) if t.vram_gb > tier.vram_gb and not t.hosted]
    return larger[0] if larger else None
