"""The InstantID face encoder: an ArcFace-family ONNX (antelopev2's `glintr100`).

InstantID's image adapter is trained on this 512-d embedding, so the generator needs
this exact network; it is published into the model store (never fetched at run time)
and loaded from there. Detection and keypoints still come from YuNet, and the
identity *check* of a result uses SFace (`FaceAnalyzer`), so judging a generation
never depends on the generator's own encoder.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from jobs.errors import ModelUnavailable
from pipelines.base import ModelFiles
from pipelines.faces.analyzer import to_bgr
from pipelines.faces.artifacts import published_file
from pipelines.faces.face import Face

ARCFACE_MODEL = "arcface-antelopev2@1"
"""Store ref of the encoder: the `glintr100.onnx` file of insightface's antelopev2."""

ARCFACE_SIZE = 112
# insightface's 5-point template for a 112x112 aligned crop, in YuNet's order
# (image-left eye first), which is also insightface's.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def align_arcface(bgr: np.ndarray, face: Face, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The crop whose 5 keypoints sit on ArcFace's template (InsightFace's
    `arcface_dst`, scaled to `size`).

    Args:
        bgr: uint8 array of shape (H, W, 3), BGR, 0..255.
        face: a face found in `bgr`, keypoints in its pixel coordinates.
        size: side of the crop in pixels.

    Returns:
        A uint8 array of shape (size, size, 3), BGR; black where the crop leaves the image.

    Raises:
        ValueError: the keypoints are degenerate (no similarity transform fits them).
    """
    source = np.array(face.keypoints, dtype=np.float32)
    target = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("the face's keypoints are degenerate; cannot align it")
    return cv2.warpAffine(bgr, matrix, (size, size), borderValue=(0, 0, 0))


class ArcFaceEncoder:
    """A 512-d ArcFace embedding of an aligned face, run with OpenCV DNN."""

    def __init__(self, net: cv2.dnn.Net) -> None:
        self.net = net

    @classmethod
    def from_store(cls, models: ModelFiles | None, ref: str = ARCFACE_MODEL) -> ArcFaceEncoder:
        """Pull `ref` from the worker's model store and build the network once.

        Raises:
            ModelUnavailable: no model source, `ref` is not published, it does not hold
                exactly one .onnx file, or OpenCV cannot load it.
        """
        path = published_file(models, ref, "identity-preserving generation (InstantID)", ".onnx")
        try:
            return cls(cv2.dnn.readNetFromONNX(str(path)))
        except cv2.error as exc:
            raise ModelUnavailable(f"model {ref!r} at {path} does not load: {exc}") from None

    def embed(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        """The L2-normalised embedding of `face` in `image`.

        Args:
            image: a PIL image, or an RGB / RGBA / gray uint8 array (H, W[, C]), 0..255.
            face: a face found in `image`.

        Returns:
            A float32 array of shape (512,), unit length (or zeros if the net gives zeros).

        Raises:
            InputInvalid: `image` is not an 8-bit gray, RGB or RGBA image.
            ValueError: the face's keypoints are degenerate.
        """
        crop = align_arcface(to_bgr(image), face)
        # ArcFace expects RGB scaled to [-1, 1].
        blob = cv2.dnn.blobFromImage(
            crop, 1 / 127.5, (ARCFACE_SIZE, ARCFACE_SIZE), (127.5, 127.5, 127.5), swapRB=True
        )
        self.net.setInput(blob)
        vector = self.net.forward().ravel().astype(np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector
