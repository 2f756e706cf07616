"""Portrait models kept for the life of a worker process, loaded on first use.

First use happens in the process that runs the job (after a prefork worker forks),
so no OpenCV network is shared across a fork. Each is small (0.1-11 MB).
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

from jobs.errors import ModelUnavailable
from pipelines.base import ModelFiles
from pipelines.faces import PREVIEW_ATTEMPTS, FaceAnalyzer
from pipelines.faces.artifacts import published_file
from pipelines.portrait.segmentation import (
    SELFIE_MODEL,
    GrabCutSegmenter,
    Segmenter,
    SelfieSegmenter,
)

LOOKUP_TTL_S = 30.0
"""How long a store lookup (found or missing) is reused before the store is asked again:
a model published (or an alias moved) while the worker runs is seen within this."""

GRABCUT_SIDE = {False: 256, True: 160}
"""GrabCut's working size, final and preview lane."""


@functools.cache
def face_analyzer(preview: bool = False) -> FaceAnalyzer:
    """The process's YuNet + SFace analyzer; the preview one shares its networks and
    tries a cheaper pass first."""
    if preview:
        return face_analyzer().with_attempts(PREVIEW_ATTEMPTS)
    return FaceAnalyzer.load()


@functools.cache
def _selfie_at(path: Path) -> SelfieSegmenter:
    return SelfieSegmenter.from_file(path)


class _Lookups:
    """Store lookups, per model source and ref, remembered for LOOKUP_TTL_S (misses
    too, as their message)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], tuple[float, Path | str]] = {}
        self._lock = threading.Lock()

    def path(self, models: ModelFiles | None, ref: str, purpose: str, suffix: str) -> Path:
        key = (id(models), ref)
        with self._lock:
            now = time.monotonic()
            cached = self._seen.get(key)
            if cached is None or now - cached[0] > LOOKUP_TTL_S:
                cached = (now, self._look_up(models, ref, purpose, suffix))
                self._seen[key] = cached
        found = cached[1]
        if isinstance(found, str):
            raise ModelUnavailable(found)
        return found

    @staticmethod
    def _look_up(models: ModelFiles | None, ref: str, purpose: str, suffix: str) -> Path | str:
        try:
            return published_file(models, ref, purpose, suffix)
        except ModelUnavailable as exc:
            return exc.message

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


LOOKUPS = _Lookups()


def selfie_segmenter(models: ModelFiles | None) -> SelfieSegmenter:
    """The published selfie model, built once per file."""
    purpose = "background removal with method 'selfie'"
    return _selfie_at(LOOKUPS.path(models, SELFIE_MODEL, purpose, ".tflite"))


def segmenter_for(
    method: str, models: ModelFiles | None, preview: bool
) -> tuple[Segmenter, str | None]:
    """The segmenter a `remove_background` method asks for, and why a fallback was
    taken (None if none was). `auto` falls back to GrabCut when the model is missing."""
    grabcut = GrabCutSegmenter(face_analyzer(preview), work_side=GRABCUT_SIDE[preview])
    if method == "grabcut":
        return grabcut, None
    try:
        return selfie_segmenter(models), None
    except ModelUnavailable as exc:
        if method == "selfie":
            raise
        return grabcut, exc.message
