"""Who to portray and how to pose them: the reference faces and the pose face of a job.

References are the job's input and its extra inputs; with `pose="image"` the last
extra input is the pose photo instead (its face's keypoints and its framing set the
composition). Every image is checked and every face found here, on the CPU with
YuNet, before any model loads: a reference without a face fails the job at once
with `face_not_found`, naming the image. Each photo contributes its largest face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from jobs.errors import FaceNotFound, InputInvalid
from jobs.ops.identity import MAX_ASPECT, IdentityPortraitParams
from pipelines.faces import Face, FaceAnalyzer
from pipelines.generative.sizing import check_image


@dataclass(frozen=True)
class FacePhoto:
    """One photo, its largest face (with its SFace embedding) and what the job calls it."""

    image: Image.Image
    face: Face
    label: str


@dataclass(frozen=True)
class Subject:
    """The faces a portrait is made of: whose identity, and whose pose."""

    references: tuple[FacePhoto, ...]
    pose: FacePhoto

    def sface_embeddings(self) -> list[np.ndarray]:
        """The references' SFace embeddings, for the identity gate."""
        return [ref.face.embedding for ref in self.references if ref.face.embedding is not None]


def labelled_inputs(
    image: Image.Image, extras: Sequence[Image.Image], pose: str
) -> tuple[list[tuple[Image.Image, str]], tuple[Image.Image, str]]:
    """(references, pose photo), each with its label, as `pose` splits the job's images."""
    photos = [(image, "input image")] + [
        (extra, f"extra input {n}") for n, extra in enumerate(extras, start=1)
    ]
    if pose == "reference":
        return photos, photos[0]
    if len(photos) < 2:
        raise InputInvalid(
            "pose='image' reads the pose photo from the job's last extra input, and this "
            "job has none: add the pose photo as an extra input, or use pose='reference'"
        )
    return photos[:-1], photos[-1]


def check_pose_aspect(image: Image.Image, label: str) -> None:
    """The portrait takes the pose photo's aspect ratio; SDXL renders up to MAX_ASPECT:1."""
    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputInvalid(
            f"{label} is {width}x{height}; the portrait takes its aspect ratio and SDXL "
            f"renders up to {MAX_ASPECT:g}:1: crop it first"
        )


def find_face(analyzer: FaceAnalyzer, image: Image.Image, label: str) -> FacePhoto:
    try:
        (face,) = analyzer.detect(image, embed=True)
    except FaceNotFound as exc:
        raise FaceNotFound(f"{label}: {exc.message}") from None
    return FacePhoto(image, face, label)


def find_subject(
    image: Image.Image,
    extras: Sequence[Image.Image],
    params: IdentityPortraitParams,
    analyzer: FaceAnalyzer,
) -> Subject:
    """Check every image of the job and find its face; the first problem fails the job."""
    references, (pose_image, pose_label) = labelled_inputs(image, extras, params.pose)
    for photo, label in [*references, (pose_image, pose_label)]:
        check_image(photo, label)
    check_pose_aspect(pose_image, pose_label)
    found = tuple(find_face(analyzer, photo, label) for photo, label in references)
    pose = found[0] if params.pose == "reference" else find_face(analyzer, pose_image, pose_label)
    return Subject(found, pose)


def average_embeddings(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The unit-length mean direction of several embeddings, each normalised first so
    every reference photo counts the same."""
    if not vectors:
        raise ValueError("no embeddings to average")
    units = []
    for vector in vectors:
        vector = np.asarray(vector, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            raise ValueError("an embedding is all zeros")
        units.append(vector / norm)
    mean = np.mean(units, axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        raise ValueError("the embeddings cancel out; they cannot be one face")
    return (mean / norm).astype(np.float32)
