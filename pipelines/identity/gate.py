"""The identity gate: render, match the faces to the references, re-render if needed.

One gate serves `identity_portrait` (one person, one or more photos of them) and
`multi_identity` (one to four people, a photo each). Every face in a render is
detected and embedded with SFace through `FaceAnalyzer`, never with the generator's
own encoder: a generator that drifted in its encoder's space cannot grade itself.
The similarity of a face to a person is the mean SFace similarity to that person's
photos (which keeps OpenCV's pairwise threshold meaningful). People and faces are
paired by the assignment that maximises the total similarity
(`scipy.optimize.linear_sum_assignment`, the Hungarian method), as UMO's
multi-identity matching reward pairs them (Cheng et al. 2025, arXiv:2509.06818). A
render passes when every person got a distinct face at or above the threshold.

`run_gate` is pure control flow over two callables (render a seed, match an image),
so its decisions are tested without any model; `verdict` turns a failed gate into the
job's error, or returns the closest attempt when the job asked for that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from jobs.errors import FaceNotFound, InputInvalid
from pipelines.base import OpContext
from pipelines.faces import Face, FaceAnalyzer, similarity

MAX_SEED = 2**63 - 1
Render = Callable[[int], Image.Image]


def attempt_seeds(seed: int, count: int) -> list[int]:
    """The job's seed, then re-render seeds derived from it: a job is repeatable, and
    neighbouring job seeds do not share re-render seeds."""
    derived = (
        int.from_bytes(hashlib.sha256(f"{seed}:{n}".encode()).digest()[:8], "big") % MAX_SEED
        for n in range(1, count)
    )
    return [seed, *derived]


@dataclass(frozen=True)
class Match:
    """The faces of one render paired with the people it should show."""

    similarity: np.ndarray
    """(people, faces) float64 SFace cosine similarities, -1..1; zero columns: no face."""
    assignment: tuple[int | None, ...]
    """Per person, the index of the face assigned to them, None when faces ran out."""
    boxes: tuple[tuple[float, ...], ...] = ()
    """Each face's box (left, top, width, height) in render pixels, for the job result."""

    @classmethod
    def from_similarity(cls, matrix: np.ndarray, boxes: Sequence[tuple[float, ...]] = ()) -> Match:
        """Pair people (rows) with faces (columns) maximising the total similarity."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ValueError(f"expected a (people, faces) matrix, got shape {matrix.shape}")
        assigned: list[int | None] = [None] * matrix.shape[0]
        if matrix.shape[1]:
            rows, cols = linear_sum_assignment(matrix, maximize=True)
            for row, col in zip(rows, cols, strict=True):
                assigned[int(row)] = int(col)
        return cls(matrix, tuple(assigned), tuple(tuple(b) for b in boxes))

    @property
    def faces(self) -> int:
        return int(self.similarity.shape[1])

    @property
    def scores(self) -> tuple[float | None, ...]:
        """Per person, the similarity of the face assigned to them (None: no face)."""
        return tuple(
            None if face is None else float(self.similarity[person, face])
            for person, face in enumerate(self.assignment)
        )

    @property
    def score(self) -> float | None:
        """The weakest person's score: the render is as good as its worst likeness.
        None when no face was found, or a person got none."""
        scores = self.scores
        if any(s is None for s in scores):
            return None
        return min(s for s in scores if s is not None)

    def passes(self, threshold: float) -> bool:
        """Every person matched by a distinct face at or above `threshold`."""
        return threshold <= 0.0 or (self.score is not None and self.score >= threshold)

    def as_info(self) -> dict[str, Any]:
        """JSON-friendly: the matrix (rows people, columns faces), pairing and boxes."""
        return {
            "similarity": [[round(float(v), 4) for v in row] for row in self.similarity],
            "assignment": list(self.assignment),
            "faces": [[round(v, 1) for v in box] for box in self.boxes],
        }


def similarity_matrix(faces: Sequence[Face], people: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """(people, faces): each face's mean SFace similarity to each person's photos."""
    matrix = np.zeros((len(people), len(faces)))
    for row, photos in enumerate(people):
        for col, face in enumerate(faces):
            matrix[row, col] = np.mean([similarity(face, photo) for photo in photos])
    return matrix


class IdentityMatcher:
    """Matches a render's faces to people, each given as SFace embeddings of their photos."""

    def __init__(self, analyzer: FaceAnalyzer, people: Sequence[Sequence[np.ndarray]]) -> None:
        if not people or not all(people):
            raise ValueError("the identity check needs at least one embedding per person")
        self.analyzer = analyzer
        self.people = [list(photos) for photos in people]

    def __call__(self, image: Image.Image) -> Match:
        try:
            faces = self.analyzer.detect(image, all_faces=True, embed=True)
        except FaceNotFound:
            faces = []
        matrix = similarity_matrix(faces, self.people)
        return Match.from_similarity(matrix, [face.box for face in faces])


Matcher = Callable[[Image.Image], Match]


@dataclass(frozen=True)
class Attempt:
    seed: int
    match: Match

    @property
    def score(self) -> float | None:
        """The weakest likeness; None when a person's face is missing."""
        return self.match.score

    def passes(self, threshold: float) -> bool:
        return self.match.passes(threshold)


@dataclass(frozen=True)
class GateResult:
    attempts: tuple[Attempt, ...]
    images: tuple[Image.Image, ...]
    threshold: float

    @property
    def passed(self) -> bool:
        return self.attempts[-1].passes(self.threshold)

    def best(self) -> int:
        """Index of the closest attempt: the most people matched, then the best weakest
        likeness (the first of equals)."""

        def rank(attempt: Attempt) -> tuple[int, float]:
            scores = attempt.match.scores
            matched = [s for s in scores if s is not None]
            return len(matched), min(matched, default=-1.0)

        ranked = [rank(a) for a in self.attempts]
        return ranked.index(max(ranked))

    def as_info(self, chosen: int) -> dict[str, Any]:
        """What the job result records about the gate: every attempt's seed, score,
        similarity matrix and assignment, and which attempt was returned."""
        return {
            "identity_scores": [_round(a.score) for a in self.attempts],
            "identity_seeds": [a.seed for a in self.attempts],
            "identity_matches": [a.match.as_info() for a in self.attempts],
            "identity_score": _round(self.attempts[chosen].score),
            "identity_passed": self.attempts[chosen].passes(self.threshold),
            "min_identity": self.threshold,
            "attempts": len(self.attempts),
            "seed": self.attempts[chosen].seed,
        }


def _round(score: float | None) -> float | None:
    return None if score is None else round(score, 4)


def run_gate(render: Render, match: Matcher, seeds: Sequence[int], threshold: float) -> GateResult:
    """Render with each seed in turn until one passes `threshold` (or seeds run out)."""
    if not seeds:
        raise ValueError("the gate needs at least one seed")
    attempts: list[Attempt] = []
    images: list[Image.Image] = []
    for seed in seeds:
        image = render(seed)
        attempts.append(Attempt(seed, match(image)))
        images.append(image)
        if attempts[-1].passes(threshold):
            break
    return GateResult(tuple(attempts), tuple(images), threshold)


def describe_attempt(attempt: Attempt, labels: Sequence[str]) -> str:
    """`seed S: 0.412` for one person; `seed S: astronaut 0.412, hopper no face` for several."""
    scores = attempt.match.scores
    if len(scores) == 1:
        (score,) = scores
        return f"seed {attempt.seed}: {'no face' if score is None else f'{score:.3f}'}"
    people = ", ".join(
        f"{label} {'no face' if score is None else f'{score:.3f}'}"
        for label, score in zip(labels, scores, strict=True)
    )
    return f"seed {attempt.seed}: {people}"


def verdict(result: GateResult, on_mismatch: str, labels: Sequence[str] = ()) -> int:
    """Index of the attempt to return; raises when no attempt passed and the job asked
    to fail (`face_not_found` if no render showed a face, else `input_invalid`).

    `labels` name the people (e.g. "reference 2 (extra input 1)") in the message.
    """
    if result.passed:
        return len(result.attempts) - 1
    if on_mismatch == "best":
        return result.best()
    people = len(result.attempts[0].match.assignment)
    names = list(labels) or [f"reference {n}" for n in range(1, people + 1)]
    tried = ", ".join(describe_attempt(a, names) for a in result.attempts)
    count = len(result.attempts)
    renders = f"{count} render{'s' if count > 1 else ''}"
    if all(a.match.faces == 0 for a in result.attempts):
        hint = (
            "Describe a portrait in the prompt, raise control_strength,"
            if people == 1
            else "Describe each person in the prompt,"
        )
        raise FaceNotFound(
            f"no face was found in any of {renders} ({tried}), so the identity could not "
            f"be checked. {hint} or set on_mismatch='best' to get the render anyway."
        )
    if people == 1:
        raise InputInvalid(
            f"the portrait's face did not match the reference photos in {renders} (SFace "
            f"similarity below min_identity {result.threshold:g}; {tried}). Use sharper, "
            "frontal reference photos, raise identity_strength, or lower min_identity; "
            "on_mismatch='best' returns the closest render instead."
        )
    raise InputInvalid(
        f"no render showed every person with their own face in {renders} (each reference "
        f"needs a distinct face with SFace similarity >= min_identity {result.threshold:g}; "
        f"{tried}). Use sharper, frontal reference photos, name each person in the prompt, "
        "or lower min_identity; on_mismatch='best' returns the closest render instead."
    )


def gated_render(
    ctx: OpContext,
    render_once: Callable[[OpContext], Image.Image],
    match: Matcher,
    seeds: list[int],
    params: Any,
    labels: Sequence[str] = (),
) -> Image.Image:
    """Render with each of `seeds` until one passes the gate (`params.min_identity`), then
    return the attempt `params.on_mismatch` chooses; every attempt is recorded in
    `ctx.info`. Progress runs over the whole budget, so it never goes back on a re-render.

    Raises:
        FaceNotFound, InputInvalid: no attempt passed and the job asked to fail (`verdict`).
    """

    def render(seed: int) -> Image.Image:
        index = seeds.index(seed)

        def progress(fraction: float) -> None:
            ctx.progress((index + fraction) / len(seeds))

        attempt = replace(ctx, seed=seed, info={}, progress=progress)
        image = render_once(attempt)
        ctx.info.update(attempt.info)
        return image

    result = run_gate(render, match, seeds, params.min_identity)
    chosen = verdict(result, params.on_mismatch, labels)
    ctx.info.update(result.as_info(chosen), identity_checked=True)
    return result.images[chosen]
