"""Face analysis on real photos: YuNet boxes and keypoints, SFace identity, failures."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from jobs.errors import FaceNotFound, ModelUnavailable
from pipelines.faces import (
    ARCFACE_MODEL,
    SAME_PERSON,
    ArcFaceEncoder,
    Face,
    FaceAnalyzer,
    FolderModels,
    align_arcface,
    same_person,
    similarity,
)


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer.load()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook")
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.asarray(Image.open(path).convert("RGB"))


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def dlib_landmarks(rgb: np.ndarray) -> list[np.ndarray]:
    """Eye centres, nose tip and mouth corners from dlib's 68-point model, in YuNet's
    order: a second, independent detector to check YuNet's keypoints against."""
    dlib = pytest.importorskip("dlib")
    spec = importlib.util.find_spec("face_recognition_models")  # its import needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-recognition-models is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat"))
    box = max(dlib.get_frontal_face_detector()(rgb, 1), key=lambda r: r.area())
    shape = predictor(rgb, box)
    p = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=float)
    return [p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]]


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_keypoints_agree_with_dlib(photo: str, analyzer: FaceAnalyzer, request) -> None:
    rgb = request.getfixturevalue(photo)
    face = analyzer.detect(rgb)[0]
    reference = dlib_landmarks(rgb)
    errors = [np.hypot(*(np.array(k) - r)) / face.eye_distance
              for k, r in zip(face.keypoints, reference, strict=True)]  # fmt: skip
    # Eyes and nose within 12 % of the eye distance (5 px on the 512 px astronaut).
    # Mouth corners within 20 %: on a smile dlib marks the outer lip corner, YuNet a
    # little inside it (measured 14-16 %).
    assert max(errors[:3]) < 0.12, errors
    assert max(errors[3:]) < 0.20, errors


def test_eyes_agree_with_haar_cascade(astronaut: np.ndarray, analyzer: FaceAnalyzer) -> None:
    face = analyzer.detect(astronaut)[0]
    x, y, w, h = (int(v) for v in face.box)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    upper = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[y : y + h * 5 // 8, x : x + w]
    found = cascade.detectMultiScale(upper, 1.05, 3, minSize=(w // 8, w // 8))
    centres = sorted((ex + x + ew / 2, ey + y + eh / 2) for ex, ey, ew, eh in found)
    assert len(centres) == 2
    for keypoint, centre in zip(face.keypoints[:2], centres, strict=True):
        assert np.hypot(keypoint[0] - centre[0], keypoint[1] - centre[1]) < 6.0


def test_box_and_score_on_the_astronaut(astronaut: np.ndarray, analyzer: FaceAnalyzer) -> None:
    (face,) = analyzer.detect(astronaut)
    x, y, w, h = face.box
    # Her face spans roughly x 178-270, y 62-175 (checked by eye).
    assert 165 < x < 190 and 50 < y < 75 and 80 < w < 105 and 95 < h < 125
    assert face.score > 0.85
    assert face.as_info()["keypoints"]["right_eye"][0] < face.as_info()["keypoints"]["left_eye"][0]


@pytest.mark.parametrize(
    "variant",
    ["mirrored", "cropped", "jpeg20", "half_size", "tight_crop", "small_96px"],
)
def test_same_person_survives_edits(
    variant: str, astronaut: np.ndarray, analyzer: FaceAnalyzer
) -> None:
    edited = {
        "mirrored": lambda a: a[:, ::-1].copy(),
        "cropped": lambda a: a[20:300, 100:380].copy(),
        "jpeg20": lambda a: jpeg(a, 20),
        "half_size": lambda a: cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA),
        # The face fills the frame: only the padded pass gives the detector context.
        "tight_crop": lambda a: a[90:160, 190:260].copy(),
        "small_96px": lambda a: cv2.resize(a, (96, 96), interpolation=cv2.INTER_AREA),
    }[variant](astronaut)
    original = analyzer.detect(astronaut, embed=True)[0]
    copy = analyzer.detect(edited, embed=True)[0]
    assert similarity(original, copy) >= SAME_PERSON
    assert same_person(original, copy)


def test_different_people_stay_apart(
    astronaut: np.ndarray, grace_hopper: np.ndarray, analyzer: FaceAnalyzer
) -> None:
    eileen = analyzer.detect(astronaut, embed=True)[0]
    grace = analyzer.detect(grace_hopper, embed=True)[0]
    cameraman = analyzer.detect(data.camera(), embed=True)[0]
    assert similarity(eileen, grace) < SAME_PERSON - 0.1  # measured 0.18
    assert similarity(eileen, cameraman) < SAME_PERSON
    assert not same_person(grace, cameraman)


def test_small_face_in_a_large_photo_is_found(
    astronaut: np.ndarray, analyzer: FaceAnalyzer
) -> None:
    # A 128 px portrait on a 3128x1928 canvas: the face is ~22 px wide, and vanishes
    # at the first pass's 640 px.
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    canvas = np.pad(small, ((900, 900), (1500, 1500), (0, 0)), constant_values=128)
    (face,) = analyzer.detect(canvas)
    x, y, _, _ = face.box
    assert 1500 < x < 1628 and 900 < y < 1028


def test_all_faces_largest_first(
    astronaut: np.ndarray, grace_hopper: np.ndarray, analyzer: FaceAnalyzer
) -> None:
    grace = cv2.resize(grace_hopper, (200, 234), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 800, 3), 200, np.uint8)
    canvas[:, :512] = astronaut
    canvas[100:334, 560:760] = grace
    faces = analyzer.detect(canvas, all_faces=True, embed=True)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].box[0] < 512 <= faces[1].box[0]
    assert analyzer.detect(canvas)[0].box == faces[0].box


@pytest.mark.parametrize("photo", ["coffee", "rocket", "chelsea"])
def test_no_face_says_what_was_tried(photo: str, analyzer: FaceAnalyzer) -> None:
    with pytest.raises(FaceNotFound) as caught:
        analyzer.detect(getattr(data, photo)())
    message = caught.value.message
    assert "no face found" in message and "padded" in message and "score >= 0.7" in message
    assert caught.value.code == "face_not_found"


def test_embedding_is_unit_length_and_needs_a_face(
    astronaut: np.ndarray, analyzer: FaceAnalyzer
) -> None:
    face = analyzer.detect(astronaut)[0]
    assert face.embedding is None
    with pytest.raises(ValueError, match="no embedding"):
        similarity(face, face)
    embedded = analyzer.embed(astronaut, face)
    assert embedded.embedding is not None and embedded.embedding.shape == (128,)
    assert np.linalg.norm(embedded.embedding) == pytest.approx(1.0, abs=1e-5)


def test_arcface_encoder_names_the_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=ARCFACE_MODEL):
        ArcFaceEncoder.from_store(None)
    with pytest.raises(ModelUnavailable, match="arcface-antelopev2"):
        ArcFaceEncoder.from_store(FolderModels(tmp_path))


def test_arcface_alignment_puts_eyes_on_the_template(
    astronaut: np.ndarray, analyzer: FaceAnalyzer
) -> None:
    face = analyzer.detect(astronaut)[0]
    crop = cv2.cvtColor(align_arcface(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR), face),
                        cv2.COLOR_BGR2RGB)  # fmt: skip
    assert crop.shape == (112, 112, 3)
    again: Face = analyzer.detect(crop)[0]
    # ArcFace's template: eyes at (38.3, 51.7) and (73.5, 51.5) of a 112 px crop.
    assert np.hypot(again.keypoints[0][0] - 38.3, again.keypoints[0][1] - 51.7) < 4
    assert np.hypot(again.keypoints[1][0] - 73.5, again.keypoints[1][1] - 51.5) < 4
