"""The people of a multi-identity job: one reference photo each, its face found and aligned.

References are the job's input, then its extra inputs, one person per photo (1-4).
Every photo is checked and its largest face found with YuNet on the CPU before any
model loads: a photo without a face fails the job at once with `face_not_found`
naming it. Each face is then cropped and aligned (eyes level, at a fixed height and
spacing) into a square the generator reads as that person's reference, so the model
sees faces at one scale whatever the photos' framing, and the SFace gate gets each
person's embedding from the same detection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from jobs.errors import FaceNotFound, InputInvalid
from jobs.ops.multi_identity import MAX_PEOPLE
from pipelines.faces import Face, FaceAnalyzer
from pipelines.generative.sizing import check_image

FACE_SPAN = 4.0
"""Side of an aligned crop in eye distances: the whole head with hair and some neck
(a face box is ~2.3 eye distances wide)."""
EYE_LINE = 0.42
"""Height of the eyes in an aligned crop, as a fraction of its side from the top."""


@dataclass(frozen=True)
class Person:
    """One reference: the photo, its largest face (with SFace embedding), and its label."""

    photo: Image.Image
    face: Face
    label: str

    @property
    def embedding(self) -> np.ndarray:
        if self.face.embedding is None:
            raise ValueError(f"{self.label}: the face has no SFace embedding")
        return self.face.embedding


def labelled_photos(
    image: Image.Image, extras: Sequence[Image.Image]
) -> list[tuple[Image.Image, str]]:
    """Every reference photo of the job with its label, e.g. "reference 2 (extra input 1)".

    Raises:
        InputInvalid: more than MAX_PEOPLE photos.
    """
    photos = [image, *extras]
    if len(photos) > MAX_PEOPLE:
        raise InputInvalid(
            f"multi_identity takes 1-{MAX_PEOPLE} reference photos (one per person: the "
            f"input and up to {MAX_PEOPLE - 1} extra inputs); this job has {len(photos)}"
        )
    sources = ["input image"] + [f"extra input {n}" for n in range(1, len(photos))]
    return [
        (photo, f"reference {n} ({source})")
        for n, (photo, source) in enumerate(zip(photos, sources, strict=True), start=1)
    ]


def find_people(
    image: Image.Image, extras: Sequence[Image.Image], analyzer: FaceAnalyzer
) -> list[Person]:
    """Check every photo and find its face; the first problem fails the job.

    Raises:
        InputInvalid: too many photos, or one too small or too elongated.
        FaceNotFound: a photo shows no face; the message names it.
    """
    photos = labelled_photos(image, extras)
    for photo, label in photos:
        check_image(photo, label)
    people = []
    for photo, label in photos:
        try:
            (face,) = analyzer.detect(photo, embed=True)
        except FaceNotFound as exc:
            raise FaceNotFound(f"{label}: {exc.message}") from None
        people.append(Person(photo, face, label))
    return people


def align_face(photo: Image.Image, face: Face, side: int) -> Image.Image:
    """A `side` x `side` RGB crop of `face`: eyes level, centred, EYE_LINE from the top,
    FACE_SPAN eye distances across; the photo's edge pixels fill what lies outside it."""
    (right_x, right_y), (left_x, left_y) = face.keypoints[0], face.keypoints[1]
    centre = ((right_x + left_x) / 2, (right_y + left_y) / 2)
    angle = math.degrees(math.atan2(left_y - right_y, left_x - right_x))
    scale = side / (FACE_SPAN * max(face.eye_distance, 1.0))
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[0, 2] += side / 2 - centre[0]
    matrix[1, 2] += side * EYE_LINE - centre[1]
    rgb = np.asarray(photo.convert("RGB"))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    aligned = cv2.warpAffine(
        rgb, matrix, (side, side), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
    )
    return Image.fromarray(aligned)


def reference_side(requested: int | None, people: int, multiple: int, scale: float = 1.0) -> int:
    """The side each aligned crop is read at: `requested`, else UNO's default (512 px for
    one reference, 320 for several), times `scale` (a preview's), on the latent grid."""
    side = requested or (512 if people == 1 else 320)
    return max(multiple, round(side * scale / multiple) * multiple)
