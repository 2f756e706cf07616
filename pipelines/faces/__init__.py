"""Face analysis: YuNet detection with 5 keypoints, SFace identity embeddings, and the
spot where InstantID's ArcFace encoder is loaded from the model store."""

from pipelines.base import ModelFiles
from pipelines.faces.analyzer import (
    ATTEMPTS,
    PREVIEW_ATTEMPTS,
    SAME_PERSON,
    Attempt,
    FaceAnalyzer,
    same_person,
    similarity,
    to_bgr,
)
from pipelines.faces.arcface import ARCFACE_MODEL, ArcFaceEncoder, align_arcface
from pipelines.faces.artifacts import FolderModels, model_files
from pipelines.faces.face import KEYPOINT_NAMES, Face, cosine_similarity

__all__ = [
    "ARCFACE_MODEL",
    "ATTEMPTS",
    "KEYPOINT_NAMES",
    "PREVIEW_ATTEMPTS",
    "SAME_PERSON",
    "ArcFaceEncoder",
    "Attempt",
    "Face",
    "FaceAnalyzer",
    "FolderModels",
    "ModelFiles",
    "align_arcface",
    "cosine_similarity",
    "model_files",
    "same_person",
    "similarity",
    "to_bgr",
]
