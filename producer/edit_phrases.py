"""Free-text edit instructions -> a recipe, through a documented phrase table.

`POST /edit {"image_url", "instructions", "size"}` reads instructions such as
"remove background and smooth skin, then sharpen". Every phrase in `PHRASES` is
looked for (longest first, so "restore faded colour" wins over "restore"); what
matches becomes steps, in the order the phrases appear in the text. Words left over
that are not filler ("please", "the", "photo", ...) are an instruction the table does
not know: they go to the instruction-edit model (`kontext_edit`) as one prompt when
the caller says one is available, and are otherwise refused with the list of what is
understood. `size` ("1024", "1024x768") adds a final resize.

| phrase(s) | steps |
|---|---|
| remove background, cut out, transparent background | remove_background |
| white background | remove_background (background=color, #ffffff) |
| enhance skin, smooth skin, retouch skin, soften skin | skin_smooth |
| denoise, reduce noise, remove noise | denoise |
| restore, restoration, repair | the restoration recipe (dust, denoise, colour, tone, sharpen) |
| restore faded colour(s), fix faded colour(s) | restore_faded_color |
| remove dust, remove scratches, dust and scratches | dust_scratch_removal |
| sharpen, make sharper | sharpen |
| auto levels, fix exposure, auto contrast, improve contrast | auto_levels |
| white balance, fix colour cast, colour correct | white_balance |
| brighten / darken | exposure (+0.5 / -0.5 EV) |
| black and white, grayscale, greyscale, monochrome | convert (mode=gray) |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.errors import SchemaError
from jobs.schema import Recipe, Step

MAX_INSTRUCTIONS = 1000
MAX_SIZE = 8192
_SIZE = re.compile(r"^\s*(\d{1,5})\s*(?:[x\u00d7*]\s*(\d{1,5}))?\s*$")
FILLER_WORDS = """a an and also bit can do for i image it its little make me my of old photo photos
picture pic please pls slightly some the then this to up want would you"""
FILLER = frozenset(FILLER_WORDS.split())

RESTORE_STEPS: tuple[dict[str, Any], ...] = (
    {"op": "dust_scratch_removal", "params": {"sensitivity": 0.5, "max_defect_px": 5}},
    {"op": "denoise", "params": {"strength": 4.0}},
    {"op": "restore_faded_color", "params": {"strength": 0.7}},
    {"op": "white_balance", "params": {"method": "shades_of_gray", "strength": 0.4}},
    {"op": "auto_levels", "params": {"clip_percent": 0.1}},
    {"op": "sharpen", "params": {"amount": 0.5, "radius": 1.2, "threshold": 4}},
)


@dataclass(frozen=True)
class Phrase:
    """Words a user writes, and the steps they mean."""

    says: tuple[str, ...]
    steps: tuple[dict[str, Any], ...]

    @property
    def label(self) -> str:
        return self.says[0]


def _one(op: str, **params: Any) -> tuple[dict[str, Any], ...]:
    return ({"op": op, "params": params},)


PHRASES: tuple[Phrase, ...] = (
    Phrase(
        ("remove background", "remove the background", "cut out", "transparent background"),
        _one("remove_background"),
    ),
    Phrase(("white background",), _one("remove_background", background="color")),
    Phrase(
        ("enhance skin", "smooth skin", "smooth the skin", "retouch skin", "soften skin"),
        _one("skin_smooth"),
    ),
    Phrase(("denoise", "reduce noise", "remove noise"), _one("denoise")),
    Phrase(("restore", "restoration", "repair"), RESTORE_STEPS),
    Phrase(
        (
            "restore faded colour",
            "restore faded colours",
            "restore faded color",
            "restore faded colors",
            "fix faded colour",
            "fix faded colours",
            "fix faded color",
            "fix faded colors",
        ),
        _one("restore_faded_color"),
    ),
    Phrase(
        ("remove dust", "remove scratches", "dust and scratches", "remove dust and scratches"),
        _one("dust_scratch_removal"),
    ),
    Phrase(("sharpen", "make sharper", "sharper"), _one("sharpen")),
    Phrase(
        ("auto levels", "fix exposure", "auto contrast", "improve contrast"),
        _one("auto_levels"),
    ),
    Phrase(
        ("white balance", "fix colour cast", "fix color cast", "colour correct", "color correct"),
        _one("white_balance"),
    ),
    Phrase(("brighten", "brighter"), _one("exposure", ev=0.5)),
    Phrase(("darken", "darker"), _one("exposure", ev=-0.5)),
    Phrase(
        ("black and white", "grayscale", "greyscale", "monochrome"), _one("convert", mode="gray")
    ),
)


class UnknownInstruction(SchemaError):
    """Some of the instructions match no phrase and no edit model can take them."""

    def __init__(self, unknown: Sequence[str]) -> None:
        self.unknown = list(unknown)
        super().__init__(
            f"not understood: {'; '.join(repr(u) for u in unknown)}. Understood: "
            + ", ".join(phrase.label for phrase in PHRASES)
        )


def understood() -> list[str]:
    """Every phrase the table knows, as the 422 lists them."""
    return [say for phrase in PHRASES for say in phrase.says]


@dataclass(frozen=True)
class Reading:
    """What the instructions were read as: steps, and the text no phrase matched."""

    steps: tuple[Step, ...]
    unknown: tuple[str, ...]


def read_instructions(text: str) -> Reading:
    """Match phrases (longest first) and collect what is left, in the order written.

    Raises:
        SchemaError: `text` is over 1,000 characters.
    """
    if len(text) > MAX_INSTRUCTIONS:
        raise SchemaError(f"instructions are {len(text)} characters; the limit is 1000")
    lowered = " " + re.sub(r"\s+", " ", text.lower().replace("\u2019", "'")) + " "
    found: list[tuple[int, Phrase]] = []
    by_length = sorted(((say, p) for p in PHRASES for say in p.says), key=lambda sp: -len(sp[0]))
    for say, phrase in by_length:
        for match in re.finditer(rf"(?<![a-z]){re.escape(say)}(?![a-z])", lowered):
            found.append((match.start(), phrase))
            lowered = lowered[: match.start()] + "|" * len(say) + lowered[match.end() :]
    found.sort(key=lambda hit: hit[0])
    steps = tuple(Step.model_validate(step) for _, phrase in found for step in phrase.steps)
    return Reading(steps, tuple(_leftovers(lowered)))


def _leftovers(masked: str) -> list[str]:
    """Clauses of unmatched, non-filler words, split where a phrase or punctuation was."""
    clauses = re.split(r"[|,;.!?\n]+", masked)
    out = []
    for clause in clauses:
        words = re.findall(r"[a-z0-9']+", clause)
        if any(word not in FILLER for word in words):
            out.append(" ".join(words))
    return out


def resize_step(size: str | int | None) -> Step | None:
    """`"1024"` -> longest side 1024; `"1024x768"` -> fit inside 1024x768.

    Raises:
        SchemaError: `size` is neither a number nor WIDTHxHEIGHT, or a side is out
            of range.
    """
    if size is None or size == "":
        return None
    match = _SIZE.match(str(size))
    if not match:
        raise SchemaError(f"size {size!r}: write a number (longest side) or WIDTHxHEIGHT")
    width, height = int(match[1]), int(match[2]) if match[2] else None
    if not 1 <= width <= MAX_SIZE or (height is not None and not 1 <= height <= MAX_SIZE):
        raise SchemaError(f"size {size!r}: each side must be 1-{MAX_SIZE}")
    if height is None:
        return Step(op="resize", params={"max_side": width})
    return Step(op="resize", params={"width": width, "height": height})


def recipe_for(
    instructions: str, size: str | int | None = None, *, edit_op: str | None = None
) -> Recipe:
    """The recipe the instructions ask for, or `UnknownInstruction` / `SchemaError`.

    `edit_op` names the instruction-edit op to hand unknown text to (the caller decides
    whether one is available); its prompt is the unknown clauses, or the whole text
    when no phrase matched at all. It runs after the matched steps, before the resize.

    Raises:
        UnknownInstruction: text no phrase matches, when no `edit_op` takes it.
        SchemaError: the instructions are too long, or `size` is malformed.
    """
    reading = read_instructions(instructions)
    steps = list(reading.steps)
    if reading.unknown:
        if edit_op is None:
            raise UnknownInstruction(reading.unknown)
        prompt = "; ".join(reading.unknown) if steps else instructions.strip()
        steps.append(Step(op=edit_op, params={"prompt": prompt}))
    resize = resize_step(size)
    if resize is not None:
        steps.append(resize)
    if not steps:
        raise UnknownInstruction([instructions.strip() or "(empty)"])
    return Recipe(name="edit", steps=steps)
