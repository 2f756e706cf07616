"""`skin_smooth` and `detect_faces`: the face-driven portrait ops."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw

from jobs.errors import FaceNotFound
from jobs.ops.portrait import DetectFacesParams, SkinSmoothParams
from pipelines.base import OpContext
from pipelines.faces import Face
from pipelines.portrait.nets import face_analyzer
from pipelines.portrait.skin import blend, face_crop, skin_mask, smooth_patch

PREVIEW_EYE_DISTANCE = 60.0
"""In the preview lane a face is smoothed at a scale where its eyes are this far apart."""


def skin_smooth(image: Image.Image, params: SkinSmoothParams, ctx: OpContext) -> Image.Image:
    """Skin smoothed on every face (or the largest); eyes, brows, lips, hair kept sharp.

    `image` is L, RGB or RGBA; the result has its size and mode (alpha passes through).
    No face: the image unchanged with `require_face=False`.

    Raises:
        FaceNotFound: no face, and `require_face` (the default).
    """
    # 1. find the faces (the op's only failure mode)
    try:
        faces = face_analyzer(ctx.preview).detect(image, all_faces=params.all_faces)
    except FaceNotFound:
        if params.require_face:
            raise
        ctx.info["faces"] = 0
        return image
    ctx.info["faces"] = len(faces)
    if params.strength == 0.0:
        return image

    # 2. smooth each face's skin in its own crop; alpha passes through untouched
    rgb = np.array(image.convert("RGB"))
    for index, face in enumerate(faces):
        _smooth_face(rgb, face, params.strength, ctx.preview)
        ctx.progress((index + 1) / len(faces))
    result = Image.fromarray(rgb, "RGB")
    if image.mode == "L":
        return result.convert("L")  # a black-and-white portrait stays one
    if image.mode in ("RGBA", "LA"):
        result.putalpha(image.getchannel("A"))
    return result


def _smooth_face(rgb: np.ndarray, face: Face, strength: float, preview: bool) -> None:
    left, top, right, bottom = crop = face_crop(face, rgb.shape[:2])
    patch = rgb[top:bottom, left:right]
    weight = skin_mask(rgb, face, crop) * strength
    scale = PREVIEW_EYE_DISTANCE / face.eye_distance if preview else 1.0
    if scale < 1.0:
        # The filter's cost grows with the face; the smoothed layer has no fine detail
        # left to lose, so in the preview lane it is computed small and scaled back.
        small = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        smoothed = smooth_patch(small, PREVIEW_EYE_DISTANCE)
        smoothed = cv2.resize(smoothed, patch.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    else:
        smoothed = smooth_patch(patch, face.eye_distance)
    rgb[top:bottom, left:right] = blend(patch, smoothed, weight)


def detect_faces(image: Image.Image, params: DetectFacesParams, ctx: OpContext) -> Image.Image:
    """Record faces (box, score, 5 keypoints) in the job result; optionally draw them.

    Returns `image` as it was, or with `annotate` an RGB copy with the boxes drawn.

    Raises:
        FaceNotFound: no face scores `min_score` or more.
    """
    faces = face_analyzer().detect(image, all_faces=params.all_faces, min_score=params.min_score)
    ctx.info["faces"] = [face.as_info() for face in faces]
    if not params.annotate:
        return image
    annotated = image.convert("RGB")
    draw = ImageDraw.Draw(annotated)
    for face in faces:
        x, y, w, h = face.box
        line = max(2, round(w / 60))
        draw.rectangle((x, y, x + w, y + h), outline=(0, 255, 0), width=line)
        for px, py in face.keypoints:
            draw.ellipse((px - line * 1.5, py - line * 1.5, px + line * 1.5, py + line * 1.5),
                         fill=(255, 0, 0))  # fmt: skip
    return annotated
