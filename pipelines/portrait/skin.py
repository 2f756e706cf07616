"""Face-aware skin smoothing: where to smooth (a skin mask) and how (edge-preserving).

The mask is the face's oval, narrowed to pixels whose colour (YCrCb) is close to
skin sampled on that face's own cheeks, so any skin tone and lighting work and hair,
background and collar drop out. Eyes, brows and the mouth are cut out
around YuNet's keypoints; the mask is feathered so no seam shows. Scaled by the
eye distance, so it behaves the same on a 60 px and a 600 px face.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.faces import Face
from pipelines.portrait.segmentation import guided_filter

SKIN_EPS = 0.06**2
"""Guided-filter regulariser: local contrast (std, 0..1) well under 0.06 is smoothed."""

Crop = tuple[int, int, int, int]
"""left, top, right, bottom"""


def face_crop(face: Face, shape: tuple[int, int], margin: float = 0.35) -> Crop:
    """The face box grown by `margin` on each side, clipped to the image."""
    x, y, w, h = face.box
    left, top = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    right = min(shape[1], int(np.ceil(x + w * (1 + margin))))
    bottom = min(shape[0], int(np.ceil(y + h * (1 + margin))))
    return left, top, right, bottom


def skin_mask(rgb: np.ndarray, face: Face, crop: Crop) -> np.ndarray:
    """Float32 0..1 mask over `crop` of `rgb`: 1 on the face's skin, 0 elsewhere.

    `rgb` is a uint8 (H, W, 3) array, 0..255; `crop` is (left, top, right, bottom) in
    its pixels. Returns float32 of shape (bottom - top, right - left).
    """
    left, top, right, bottom = crop
    patch = rgb[top:bottom, left:right]
    shifted = _shift(face, left, top)
    oval = _face_oval(patch.shape[:2], shifted)
    skin = _skin_colour(patch, shifted) * oval
    features = feature_mask(patch.shape[:2], shifted)
    # Closing fills freckles and specular highlights the colour test rejects.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, _odd(0.12 * shifted.eye_distance))
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, kernel)
    sigma = max(1.0, 0.06 * shifted.eye_distance)
    # Features stay exactly untouched; the smoothing fades out around them, no seam.
    protect = np.maximum(features, cv2.GaussianBlur(features, (0, 0), sigma))
    mask = cv2.GaussianBlur(skin, (0, 0), sigma) * (1.0 - protect)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def smooth_patch(patch: np.ndarray, eye_distance: float) -> np.ndarray:
    """An edge-preserving smoothing of `patch`: pores, freckles and blemishes (local
    contrast under ~15 levels) go, edges with more contrast (nostrils, jaw) stay.

    A self-guided filter per channel (He et al.): fast at any radius, and unlike a
    bilateral filter it flattens mid-scale texture, not only pixel noise.
    """
    radius = max(2, round(0.06 * eye_distance))
    pixels = patch.astype(np.float32) / 255.0
    channels = [guided_filter(c, c, radius, SKIN_EPS) for c in cv2.split(pixels)]
    return np.clip(np.rint(cv2.merge(channels) * 255.0), 0, 255).astype(np.uint8)


def blend(original: np.ndarray, smoothed: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`original` and `smoothed` (uint8 (H, W, 3), 0..255) mixed per pixel by `weight`
    (float (H, W), 0..1: 0 keeps `original`); uint8 (H, W, 3)."""
    w = weight[..., None]
    mixed = original.astype(np.float32) * (1.0 - w) + smoothed.astype(np.float32) * w
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _shift(face: Face, left: int, top: int) -> Face:
    points = tuple((x - left, y - top) for x, y in face.keypoints)
    x, y, w, h = face.box
    return Face(box=(x - left, y - top, w, h), score=face.score, keypoints=points)  # type: ignore[arg-type]


def _face_oval(shape: tuple[int, int], face: Face) -> np.ndarray:
    x, y, w, h = face.box
    oval = np.zeros(shape, np.float32)
    # YuNet's box reaches into the hairline; the oval starts a little below its top.
    center = (round(x + w / 2), round(y + h * 0.58))
    cv2.ellipse(oval, center, (round(w * 0.48), round(h * 0.5)), 0, 0, 360, 1.0, -1)
    return oval


def _skin_colour(patch: np.ndarray, face: Face) -> np.ndarray:
    """1 where colour is within ~3 standard deviations of the cheeks' skin.

    Chroma alone lets blond and brown hair through; luma, with a looser floor so
    shading on the skin still passes, keeps the hair out.
    """
    ycrcb = cv2.cvtColor(patch, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    samples = _cheek_samples(ycrcb, face)
    if len(samples) < 10:
        return np.ones(patch.shape[:2], np.float32)
    mean = samples.mean(axis=0)
    # Floors: evenly lit skin has a tiny spread that would reject its own shading.
    spread = np.maximum(samples.std(axis=0), np.array([14.0, 3.0, 3.0], np.float32))
    distance = np.sqrt((((ycrcb - mean) / spread) ** 2).sum(axis=-1))
    # Soft edge between 2.5 and 3.5 standard deviations.
    return np.clip(3.5 - distance, 0.0, 1.0).astype(np.float32)


def _cheek_samples(ycrcb: np.ndarray, face: Face) -> np.ndarray:
    """Colours under each eye, beside the nose: skin on nearly every face."""
    (rx, ry), (lx, ly), (nx, ny), _, _ = face.keypoints
    radius = max(2, round(0.12 * face.eye_distance))
    rows = []
    for ex, ey in ((rx, ry), (lx, ly)):
        cx, cy = round((ex + nx) / 2), round(ey + 0.6 * (ny - ey))
        window = ycrcb[max(0, cy - radius) : cy + radius, max(0, cx - radius) : cx + radius]
        rows.append(window.reshape(-1, 3))
    return np.concatenate(rows)


def feature_mask(shape: tuple[int, int], face: Face) -> np.ndarray:
    """1 over the eyes (with lashes), brows and lips of `face`, else 0: filled ellipses
    around the keypoints, sized by the eye distance. Float32 array of `shape` (H, W)."""
    d = face.eye_distance
    (rx, ry), (lx, ly), _, (mrx, mry), (mlx, mly) = face.keypoints
    angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))  # follow a tilted head
    mask = np.zeros(shape, np.float32)

    def ellipse(cx: float, cy: float, ax: float, ay: float) -> None:
        axes = (max(1, round(ax)), max(1, round(ay)))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, angle, 0, 360, 1.0, -1)

    for ex, ey in ((rx, ry), (lx, ly)):
        ellipse(ex, ey, 0.32 * d, 0.2 * d)  # eye and lashes
        ellipse(ex, ey - 0.3 * d, 0.36 * d, 0.14 * d)  # brow
    mouth_x, mouth_y = (mrx + mlx) / 2, (mry + mly) / 2
    mouth_half = np.hypot(mlx - mrx, mly - mry) / 2
    ellipse(mouth_x, mouth_y, mouth_half + 0.15 * d, 0.28 * d)
    return mask


def _odd(size: float) -> tuple[int, int]:
    side = max(3, int(size) | 1)
    return side, side
