"""The identity gate: render, check the face against the references, re-render if needed.

The check uses SFace through `FaceAnalyzer`, never the generator's own ArcFace encoder:
a generator that drifted in ArcFace's space cannot grade itself. A render's score is
the mean SFace similarity of its largest face to each reference photo (mean pairwise
similarity keeps OpenCV's pairwise threshold meaningful); no face scores None.

`run_gate` is pure control flow over two callables (render a seed, score an image), so
its decisions are tested without any model; `verdict` turns a failed gate into the
job's error, or returns the closest attempt when the job asked for that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from jobs.errors import FaceNotFound, InputInvalid
from pipelines.faces import FaceAnalyzer, similarity

MAX_SEED = 2**63 - 1
Render = Callable[[int], Image.Image]
Scorer = Callable[[Image.Image], float | None]


def attempt_seeds(seed: int, count: int) -> list[int]:
    """The job's seed, then re-render seeds derived from it: a job is repeatable, and
    neighbouring job seeds do not share re-render seeds."""
    derived = (
        int.from_bytes(hashlib.sha256(f"{seed}:{n}".encode()).digest()[:8], "big") % MAX_SEED
        for n in range(1, count)
    )
    return [seed, *derived]


class IdentityScorer:
    """Scores a render: mean SFace similarity of its face to the reference faces."""

    def __init__(self, analyzer: FaceAnalyzer, references: Sequence[np.ndarray]) -> None:
        if not references:
            raise ValueError("the identity check needs at least one reference embedding")
        self.analyzer = analyzer
        self.references = list(references)

    def __call__(self, image: Image.Image) -> float | None:
        try:
            (face,) = self.analyzer.detect(image, embed=True)
        except FaceNotFound:
            return None
        return float(np.mean([similarity(face, ref) for ref in self.references]))


@dataclass(frozen=True)
class Attempt:
    seed: int
    score: float | None
    """None: no face in the render."""

    def passes(self, threshold: float) -> bool:
        return threshold <= 0.0 or (self.score is not None and self.score >= threshold)


@dataclass(frozen=True)
class GateResult:
    attempts: tuple[Attempt, ...]
    images: tuple[Image.Image, ...]
    threshold: float

    @property
    def passed(self) -> bool:
        return self.attempts[-1].passes(self.threshold)

    def best(self) -> int:
        """Index of the closest attempt (the first of equals; a face beats none)."""
        ranked = [-1.0 if a.score is None else a.score for a in self.attempts]
        return ranked.index(max(ranked))

    def as_info(self, chosen: int) -> dict[str, Any]:
        """What the job result records about the gate."""
        return {
            "identity_scores": [_round(a.score) for a in self.attempts],
            "identity_seeds": [a.seed for a in self.attempts],
            "identity_score": _round(self.attempts[chosen].score),
            "identity_passed": self.attempts[chosen].passes(self.threshold),
            "min_identity": self.threshold,
            "attempts": len(self.attempts),
            "seed": self.attempts[chosen].seed,
        }


def _round(score: float | None) -> float | None:
    return None if score is None else round(score, 4)


def run_gate(render: Render, score: Scorer, seeds: Sequence[int], threshold: float) -> GateResult:
    """Render with each seed in turn until one passes `threshold` (or seeds run out)."""
    if not seeds:
        raise ValueError("the gate needs at least one seed")
    attempts: list[Attempt] = []
    images: list[Image.Image] = []
    for seed in seeds:
        image = render(seed)
        attempts.append(Attempt(seed, score(image)))
        images.append(image)
        if attempts[-1].passes(threshold):
            break
    return GateResult(tuple(attempts), tuple(images), threshold)


def verdict(result: GateResult, on_mismatch: str) -> int:
    """Index of the attempt to return; raises when no attempt passed and the job asked
    to fail (`face_not_found` if no render showed a face, else `input_invalid`)."""
    if result.passed:
        return len(result.attempts) - 1
    if on_mismatch == "best":
        return result.best()
    tried = ", ".join(
        f"seed {a.seed}: {'no face' if a.score is None else f'{a.score:.3f}'}"
        for a in result.attempts
    )
    count = len(result.attempts)
    renders = f"{count} render{'s' if count > 1 else ''}"
    if all(a.score is None for a in result.attempts):
        raise FaceNotFound(
            f"no face was found in any of {renders} ({tried}), so the identity could not "
            "be checked. Describe a portrait in the prompt, raise control_strength, or "
            "set on_mismatch='best' to get the render anyway."
        )
    raise InputInvalid(
        f"the portrait's face did not match the reference photos in {renders} (SFace "
        f"similarity below min_identity {result.threshold:g}; {tried}). Use sharper, "
        "frontal reference photos, raise identity_strength, or lower min_identity; "
        "on_mismatch='best' returns the closest render instead."
    )
