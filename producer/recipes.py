"""Recipes from a YAML/JSON file or from repeated `--op NAME[:k=v,...]` flags.

A recipe file holds `steps` (each `{op: NAME, params: {...}}` or the shorthand
`{NAME: {...}}`), an optional `name`, and an optional `output:` block with the
format and quality the recipe was tuned for. Every problem is one `SchemaError`
that names the file and line, or the `--op` flag, it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jobs.errors import DarkroomError, SchemaError
from jobs.schema import OutputSpec, Recipe, Step
from jobs.yamlfile import parse_text, read_text

TOP_LEVEL_KEYS = frozenset({"name", "steps", "output"})
# What a recipe may say about its output; where it goes is the submitter's business.
OUTPUT_KEYS = frozenset({"format", "quality", "lossless", "keep_steps"})
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)$")
_OP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe plus the output settings its file asked for."""

    recipe: Recipe
    output: dict[str, Any] = field(default_factory=dict)
    origin: str = ""


def load_recipe(path: str | Path) -> LoadedRecipe:
    """Read and validate a recipe file (`.yaml`, `.yml` or `.json`).

    Raises:
        SchemaError: the file cannot be read or parsed, or is not a valid recipe;
            the message names the file and, where known, the line of the step.
    """
    path = Path(path)
    text = read_text(path, SchemaError)
    data = parse_text(path, text, SchemaError)
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: a recipe is a mapping with a 'steps' list")
    _refuse_unknown(path, data, TOP_LEVEL_KEYS, "key", "a recipe has")
    steps = _steps(path, data.get("steps"), _step_lines(text))
    output = _output_block(path, data.get("output"))
    try:
        recipe = Recipe(name=data.get("name"), steps=steps)
    except ValidationError as exc:
        raise SchemaError(f"{path}: {first_error(exc)}") from None
    return LoadedRecipe(recipe, output, origin=str(path))


def _step_lines(text: str) -> list[int]:
    """1-based line of each item of the top-level `steps` list; empty if unknown."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "steps" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _steps(path: Path, raw: Any, lines: list[int]) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise SchemaError(f"{path}: 'steps' must be a non-empty list of ops")
    steps = []
    for i, item in enumerate(raw):
        where = f"{path}:{lines[i]}" if i < len(lines) else f"{path}: step {i + 1}"
        steps.append(_step(where, item))
    return steps


def _step(where: str, item: Any) -> Step:
    op = _op_name_of(item)
    label = f"{where} ({op})" if op else where
    try:
        return Step.model_validate(item)
    except ValidationError as exc:
        raise SchemaError(f"{label}: {first_error(exc)}") from None
    except DarkroomError as exc:
        raise SchemaError(f"{label}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{label}: not a step ({exc})") from None


def _op_name_of(item: Any) -> str | None:
    if isinstance(item, dict):
        if isinstance(item.get("op"), str):
            return str(item["op"])
        if len(item) == 1:
            return str(next(iter(item)))
    return None


def _refuse_unknown(
    path: Path, raw: dict[str, Any], allowed: frozenset[str] | set[str], label: str, lead: str
) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SchemaError(
            f"{path}: unknown {label}(s) {', '.join(map(str, unknown))}; "
            f"{lead} {', '.join(sorted(allowed))}"
        )


def _output_block(path: Path, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SchemaError(f"{path}: 'output' must be a mapping of {', '.join(sorted(OUTPUT_KEYS))}")
    _refuse_unknown(path, raw, OUTPUT_KEYS, "output key", "allowed:")
    try:
        OutputSpec.model_validate(raw)
    except ValidationError as exc:
        raise SchemaError(f"{path}: output.{first_error(exc)}") from None
    return dict(raw)


def first_error(exc: ValidationError) -> str:
    """The first problem pydantic found, on one line: `field: message`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


# -- --op flags ----------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A flag value as int, float, bool, None or (otherwise) the string itself."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def parse_op(spec: str) -> Step:
    """`denoise:strength=8` or `resize:max_side=2048,fit=cover` or `auto_levels`.

    Raises:
        SchemaError: not NAME[:key=value,...], an unknown op, or invalid params.
    """
    name, _, rest = spec.strip().partition(":")
    if not _OP_NAME.match(name):
        raise SchemaError(f"--op {spec!r}: expected NAME[:key=value,...]")
    params: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise SchemaError(f"--op {spec!r}: {pair!r} is not key=value")
        params[key.strip()] = parse_value(value.strip())
    try:
        return Step(op=name, params=params)
    except ValidationError as exc:
        raise SchemaError(f"--op {spec!r}: {first_error(exc)}") from None
    except DarkroomError as exc:
        raise SchemaError(f"--op {spec!r}: {exc}") from None


def recipe_from_ops(specs: Sequence[str], name: str | None = None) -> LoadedRecipe:
    """A recipe from `--op` flags, in the order given.

    Raises:
        SchemaError: no `--op` given, or one is invalid.
    """
    if not specs:
        raise SchemaError("give a recipe: --recipe FILE or at least one --op NAME[:k=v,...]")
    try:
        recipe = Recipe(name=name, steps=[parse_op(spec) for spec in specs])
    except ValidationError as exc:
        raise SchemaError(f"--op: {first_error(exc)}") from None
    return LoadedRecipe(recipe, {}, origin="--op " + " --op ".join(specs))
