"""IdentityNet's control image: the 5 face keypoints drawn as InstantID draws them.

InstantID's `draw_kps` joins each eye and mouth corner to the nose tip with a filled
ellipse ("limb") in the colour of the outer point, dims the limbs to 60 %, then draws
each keypoint as a filled disc: red, green, blue, yellow, magenta in the detector's
order (image-left eye, image-right eye, nose, image-left mouth corner, image-right
mouth corner; YuNet and insightface agree on it). IdentityNet was trained on exactly
these images at ~1024 px, so the stroke sizes scale with the canvas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from pipelines.faces import Face

Point = tuple[float, float]

COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
)
"""RGB colour of each keypoint, in the detector's order."""
LIMBS: tuple[tuple[int, int], ...] = ((0, 2), (1, 2), (3, 2), (4, 2))
"""Eyes and mouth corners, each joined to the nose tip."""
LIMB_DIM = 0.6
TRAINED_SIDE = 1024
"""The canvas InstantID's stroke sizes (4 px limbs, 10 px discs) were chosen for."""
STICK_WIDTH = 4
DISC_RADIUS = 10


def map_keypoints(face: Face, source: tuple[int, int], target: tuple[int, int]) -> list[Point]:
    """`face`'s keypoints, found in an image of size `source`, in a canvas of size
    `target` (same aspect ratio: the canvas is that image resized)."""
    sx, sy = target[0] / source[0], target[1] / source[1]
    return [(x * sx, y * sy) for x, y in face.keypoints]


def draw_keypoints(size: tuple[int, int], keypoints: Sequence[Point]) -> Image.Image:
    """A black RGB image of `size` (width, height) with the keypoints drawn on it."""
    if len(keypoints) != len(COLORS):
        raise ValueError(f"expected {len(COLORS)} keypoints, got {len(keypoints)}")
    width, height = size
    scale = max(width, height) / TRAINED_SIDE
    stick = max(1, round(STICK_WIDTH * scale))
    radius = max(1, round(DISC_RADIUS * scale))
    points = np.asarray(keypoints, dtype=np.float64)
    canvas = np.zeros((height, width, 3), dtype=np.float64)
    for outer, inner in LIMBS:
        _draw_limb(canvas, points[outer], points[inner], stick, COLORS[outer])
    canvas = (canvas * LIMB_DIM).astype(np.uint8)
    for (x, y), color in zip(points, COLORS, strict=True):
        cv2.circle(canvas, (int(x), int(y)), radius, color, -1)
    return Image.fromarray(canvas, "RGB")


def _draw_limb(
    canvas: np.ndarray, a: np.ndarray, b: np.ndarray, width: int, color: tuple[int, int, int]
) -> None:
    """A filled ellipse from `a` to `b`, `width` px thick (InstantID's limb)."""
    centre = (int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2))
    length = float(np.hypot(*(a - b)))
    angle = math.degrees(math.atan2(a[1] - b[1], a[0] - b[0]))
    polygon = cv2.ellipse2Poly(centre, (int(length / 2), width), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, np.asarray(polygon, dtype=np.int32), color)
