"""Person segmentation: a coarse person probability, then an edge-aware alpha.

Two segmenters share one interface (`segment(rgb)`: person probability, 0..1):

- `SelfieSegmenter`: MediaPipe's selfie-segmentation network (a 250 KB TFLite file,
  Apache-2.0) run by OpenCV DNN, so neither mediapipe nor its numpy<2 pin is needed.
  It is a published model (`SELFIE_MODEL`) pulled from the model store.
- `GrabCutSegmenter`: classical, no model file: GrabCut seeded by the largest face
  with a head-and-shoulders prior. Weaker where the backdrop has the subject's colours
  (IoU 0.86 against the selfie model's 0.96 on the astronaut, `python -m
  bench.portrait`), and it needs a face, but it is always available.

`refine_alpha` upsamples the coarse probability with a guided filter so the edge
follows the photo's own edges (hair, collar) instead of a blurry 256 px mask.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from jobs.errors import ModelUnavailable
from pipelines.base import ModelFiles
from pipelines.faces import Face, FaceAnalyzer
from pipelines.faces.artifacts import published_file

SELFIE_MODEL = "selfie-segmentation@1"
"""Store ref: `selfie_segmentation.tflite` from the mediapipe 0.10.21 wheel."""
SELFIE_SIZE = 256


class Segmenter(Protocol):
    name: str

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Person probability, float32 in 0..1, over `rgb` at the segmenter's own
        resolution (`refine_alpha` brings it to the image's)."""
        ...


class SelfieSegmenter:
    """MediaPipe's general selfie-segmentation model (256x256 RGB in, 256x256 out)."""

    name = "selfie"

    def __init__(self, net: cv2.dnn.Net) -> None:
        self.net = net
        self._lock = threading.Lock()  # one DNN net must not run two forwards at once

    @classmethod
    def from_file(cls, path: Path) -> SelfieSegmenter:
        """The segmenter of the TFLite file at `path`.

        Raises:
            ModelUnavailable: OpenCV cannot load the file.
        """
        try:
            return cls(cv2.dnn.readNetFromTFLite(str(path)))
        except cv2.error as exc:
            raise ModelUnavailable(f"{path} is not a loadable TFLite model: {exc}") from None

    @classmethod
    def from_store(cls, models: ModelFiles | None, ref: str = SELFIE_MODEL) -> SelfieSegmenter:
        """The segmenter of the published model `ref`.

        Raises:
            ModelUnavailable: no model source, `ref` is not published, it does not hold
                exactly one .tflite file, or OpenCV cannot load it.
        """
        purpose = "background removal with method 'selfie'"
        return cls.from_file(published_file(models, ref, purpose, ".tflite"))

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Person probability of `rgb` (uint8 (H, W, 3), 0..255): float32 0..1 of shape
        (SELFIE_SIZE, SELFIE_SIZE), the model's own resolution."""
        blob = cv2.dnn.blobFromImage(rgb, 1 / 255.0, (SELFIE_SIZE, SELFIE_SIZE))
        with self._lock:
            self.net.setInput(blob)
            return self.net.forward().reshape(SELFIE_SIZE, SELFIE_SIZE).astype(np.float32)


class GrabCutSegmenter:
    """GrabCut seeded by the largest face: the face and a torso column are person, the
    area above the head and beside the head is background, the rest is learned."""

    name = "grabcut"

    def __init__(self, analyzer: FaceAnalyzer, work_side: int = 256, iterations: int = 5) -> None:
        self.analyzer = analyzer
        self.work_side = work_side
        self.iterations = iterations

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Person mask of `rgb` (uint8 (H, W, 3), 0..255): float32 0 or 1, of shape
        (h, w) with max(h, w) <= `work_side`.

        Raises:
            FaceNotFound: no face to seed GrabCut with.
        """
        face = self.analyzer.detect(rgb)[0]  # FaceNotFound: nothing to seed GrabCut with
        height, width = rgb.shape[:2]
        scale = min(1.0, self.work_side / max(height, width))
        small = cv2.resize(rgb, (round(width * scale), round(height * scale)),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        seeds = person_prior(small.shape[:2], face, scale)
        background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
        # No rect: the labels seed it (OpenCV's stubs want one, so give an empty one).
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), seeds, (0, 0, 0, 0), background,
                    foreground, self.iterations, cv2.GC_INIT_WITH_MASK)  # fmt: skip
        return np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


def person_prior(shape: tuple[int, int], face: Face, scale: float) -> np.ndarray:
    """GrabCut's initial labels for a head-and-shoulders subject below `face`.

    `shape` is (height, width) of the image GrabCut runs on, `scale` maps `face`'s
    coordinates into it. Returns a uint8 array of that shape holding `cv2.GC_BGD`,
    `GC_FGD`, `GC_PR_BGD` or `GC_PR_FGD` per pixel.
    """
    height, width = shape
    x, y, w, h = (v * scale for v in face.box)
    cx, chin = x + w / 2, y + h
    seeds = np.full((height, width), cv2.GC_PR_BGD, np.uint8)

    def ellipse(cy: float, rx: float, ry: float, label: int) -> None:
        center, axes = (round(cx), round(cy)), (max(1, round(rx)), max(1, round(ry)))
        cv2.ellipse(seeds, center, axes, 0, 0, 360, label, -1)

    # probably person: the head, and shoulders widening down to the bottom edge
    ellipse(y + h * 0.45, w * 0.85, h * 0.85, cv2.GC_PR_FGD)
    body = [(-0.9, 0), (0.9, 0), (2.6, 1.2), (3.2, None), (-3.2, None), (-2.6, 1.2)]
    points = [(cx + dx * w, height if dy is None else chin + dy * h) for dx, dy in body]
    cv2.fillPoly(seeds, [np.array(points, np.int32)], cv2.GC_PR_FGD)
    # surely person: the inner face and a torso column under the chin
    ellipse(y + h * 0.5, w * 0.35, h * 0.4, cv2.GC_FGD)
    cv2.rectangle(seeds, (round(cx - w * 0.6), round(chin + h * 0.6)),
                  (round(cx + w * 0.6), height - 1), cv2.GC_FGD, -1)  # fmt: skip
    # surely background: above the head, and beside it down to the chin
    top = round(y - h * 0.5)
    if top > 0:
        seeds[:top] = cv2.GC_BGD
    cv2.rectangle(seeds, (0, 0), (round(cx - w * 1.4), round(chin)), cv2.GC_BGD, -1)
    cv2.rectangle(seeds, (round(cx + w * 1.4), 0), (width - 1, round(chin)), cv2.GC_BGD, -1)
    return seeds


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: `source` smoothed, but with `guide`'s edges.

    K. He, J. Sun, X. Tang, "Guided Image Filtering", ECCV 2010 / TPAMI 2013.
    `guide` and `source` are float32 arrays of one shape (H, W), values about 0..1;
    `radius` is the box half-width in pixels, `eps` the regulariser (in squared units
    of `guide`). Returns a float32 array of shape (H, W).
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(source)
    var_i = box(guide * guide) - mean_i * mean_i
    cov_ip = box(guide * source) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


WORK_SIDE = 512
"""Longest side the alpha is computed at: the coarse masks hold no finer detail, and it
keeps a 1 MP cut-out to a few milliseconds of filtering."""


def work_image(rgb: np.ndarray) -> np.ndarray:
    """`rgb` scaled down to WORK_SIDE (never up): what segmenters and the refine see.

    `rgb` is a uint8 (H, W, 3) array; the result is uint8 (h, w, 3) with
    max(h, w) <= WORK_SIDE, `rgb` itself when it is already small enough.
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    if scale == 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def refine_alpha(
    rgb: np.ndarray, probability: np.ndarray, feather_px: float, work: np.ndarray | None = None
) -> np.ndarray:
    """An alpha (float32 0..1, the size of `rgb`) that follows the photo's edges,
    softened by `feather_px` (in `rgb`'s pixels). `work` is `work_image(rgb)` if the
    caller already has it."""
    work = work_image(rgb) if work is None else work
    size = (work.shape[1], work.shape[0])
    guide = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    shrink = cv2.INTER_AREA if probability.shape[1] > size[0] else cv2.INTER_LINEAR
    coarse = cv2.resize(probability.astype(np.float32), size, interpolation=shrink)
    radius = max(2, round(max(size) / 100))
    fine = guided_filter(guide, coarse, radius, 1e-3)
    scale = size[0] / rgb.shape[1]
    if feather_px * scale > 0.3:
        fine = cv2.GaussianBlur(fine, (0, 0), feather_px * scale)
    fine = np.clip(fine, 0.0, 1.0)
    if fine.shape[:2] == rgb.shape[:2]:
        return fine.astype(np.float32)
    full = (rgb.shape[1], rgb.shape[0])
    return cv2.resize(fine, full, interpolation=cv2.INTER_LINEAR).astype(np.float32)
