"""The catalogue's building blocks: params base, resource needs, op specs, registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from jobs.errors import SchemaError

Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "nf4"]


class Params(BaseModel):
    """Base of every op's params: unknown keys are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Needs:
    """What an op needs to run.

    `cpu` ops run anywhere. GPU ops list the minimum VRAM (GB) per precision; a tier
    can run the op if it offers one of those precisions with at least that memory.
    """

    cpu: bool = True
    vram_gb: dict[str, float] = field(default_factory=dict)


CPU = Needs()

MAX_EXTRA_INPUTS = 8
"""The most extra images one job carries (`Job.extra_inputs`' bound)."""


@dataclass(frozen=True)
class OpSpec:
    name: str
    params: type[Params]
    needs: Needs
    summary: str
    family: str = "classic"  # the `pipelines` module that implements it
    needs_for: Callable[[Any], Needs] | None = None
    """Needs that depend on params (e.g. which model an op runs); else `needs`."""
    extra_inputs: int = 0
    """How many of the job's extra images the op reads (0: it takes none)."""
    extra_role: str = ""
    """What those extra images are to the op, for messages (e.g. "reference images")."""
    extra_inputs_for: Callable[[Any], int] | None = None
    """Extra images read under these params (e.g. a backdrop only with
    background='image'); else `extra_inputs`."""

    def needs_of(self, raw: dict[str, Any]) -> Needs:
        return self.needs if self.needs_for is None else self.needs_for(self.validate(raw))

    def extra_inputs_of(self, raw: dict[str, Any]) -> int:
        """How many extra images the op reads with params `raw` (0: none)."""
        if self.extra_inputs_for is None:
            return self.extra_inputs
        return self.extra_inputs_for(self.validate(raw))

    def validate(self, raw: dict[str, Any]) -> Params:
        """`raw` params checked against this op's model: bounds, types, unknown keys.

        Raises:
            SchemaError: the params do not validate; every problem in one message.
        """
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
                for err in exc.errors()
            )
            raise SchemaError(f"op {self.name!r}: {problems}") from None


CATALOGUE: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add `spec` to the catalogue; returns it.

    Raises:
        ValueError: an op of that name is already registered.
    """
    if spec.name in CATALOGUE:
        raise ValueError(f"op {spec.name!r} is already in the catalogue")
    CATALOGUE[spec.name] = spec
    return spec


Steps = Sequence[tuple[str, dict[str, Any]]]
"""A recipe's steps as (op name, raw params) pairs."""


def check_extra_inputs(steps: Steps, count: int) -> None:
    """Whether a recipe of `steps` can use `count` extra images (after the job's input).

    Every step reads the same extra images, so each op that reads any under its params
    must take them all, and a recipe with extra images needs at least one op that reads
    them.

    Raises:
        SchemaError: no step reads extra images, or one reads fewer than `count`; the
            message names the op and what it takes.
    """
    if count <= 0:
        return
    taken = [(get_op(op), get_op(op).extra_inputs_of(params)) for op, params in steps]
    readers = [(spec, most) for spec, most in taken if most > 0]
    if not readers:
        raise SchemaError(_read_by_none([spec for spec, _ in taken], count))
    for spec, most in readers:
        if count > most:
            raise SchemaError(
                f"op {spec.name!r} takes at most {most} extra input(s) ({spec.extra_role}), "
                f"so {1 + most} images in all with the input; this job has {count} extra "
                f"inputs, {1 + count} images in all"
            )


def _read_by_none(specs: Sequence[OpSpec], count: int) -> str:
    unique = list({spec.name: spec for spec in specs}.values())
    names = ", ".join(repr(spec.name) for spec in unique)
    which = f"op {names} takes no" if len(unique) == 1 else f"none of the ops {names} takes"
    hints = [f"{spec.name}: {spec.extra_role}" for spec in unique if spec.extra_inputs]
    hint = f" with these params ({'; '.join(hints)})" if hints else ""
    takers = ", ".join(sorted(name for name, spec in CATALOGUE.items() if spec.extra_inputs))
    return f"{which} extra inputs{hint}, and this job has {count}; ops that take them: {takers}"


def get_op(name: str) -> OpSpec:
    """The catalogue's spec of op `name`.

    Raises:
        SchemaError: no such op; the message lists the known ones.
    """
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise SchemaError(f"unknown op {name!r}; known ops: {known}") from None
