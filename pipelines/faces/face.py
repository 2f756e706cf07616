"""A detected face: box, score, five keypoints and (on demand) an identity embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# YuNet's keypoint order. "Right" and "left" are the subject's: the right eye is the
# one on the image's left in an unmirrored photo.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")

Point = tuple[float, float]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Face:
    """One face in image pixel coordinates of the image it was found in."""

    box: Box
    """left, top, width, height"""
    score: float
    keypoints: tuple[Point, Point, Point, Point, Point]
    """right eye, left eye, nose tip, right mouth corner, left mouth corner"""
    embedding: np.ndarray | None = None
    """L2-normalised identity vector; None until an analyzer's `embed` fills it."""

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    @property
    def eye_distance(self) -> float:
        (rx, ry), (lx, ly) = self.keypoints[0], self.keypoints[1]
        return float(np.hypot(lx - rx, ly - ry))

    def keypoint(self, name: str) -> Point:
        return self.keypoints[KEYPOINT_NAMES.index(name)]

    def as_row(self) -> np.ndarray:
        """The row OpenCV's detector returns, which `alignCrop` expects: float32, shape
        (15,): box x, y, w, h, then 5 keypoints as x, y, then the score (pixels)."""
        points = [c for point in self.keypoints for c in point]
        return np.array([*self.box, *points, self.score], dtype=np.float32)

    def as_info(self) -> dict[str, Any]:
        """A JSON-friendly summary for a job's result."""
        return {
            "box": [round(v, 1) for v in self.box],
            "score": round(self.score, 3),
            "keypoints": {
                name: [round(x, 1), round(y, 1)]
                for name, (x, y) in zip(KEYPOINT_NAMES, self.keypoints, strict=True)
            },
        }

    @classmethod
    def from_row(cls, row: np.ndarray, scale: float = 1.0, offset: Point = (0.0, 0.0)) -> Face:
        """A face from a detector row (shape (15,) or longer, as `as_row`) found in an
        image scaled by `scale` and padded by `offset` pixels; coordinates come back in
        the original image's pixels."""
        ox, oy = offset

        def point(x: float, y: float) -> Point:
            return (float(x / scale - ox), float(y / scale - oy))

        x, y, w, h = (float(v) for v in row[:4])
        left, top = point(x, y)
        kps = tuple(point(row[4 + 2 * i], row[5 + 2 * i]) for i in range(5))
        return cls(
            box=(left, top, w / scale, h / scale),
            score=float(row[14]),
            keypoints=kps,  # type: ignore[arg-type]
        )


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two embeddings (any float arrays of the same size,
    flattened), -1..1; 0 if either is all zeros."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denominator == 0.0:
        return 0.0
    return float(np.dot(a, b) / denominator)
