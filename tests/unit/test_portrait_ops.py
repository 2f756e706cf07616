"""The portrait ops' catalogue entries, `skin_smooth` and `detect_faces` on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

import jobs.ops.portrait  # noqa: F401  (registers the portrait ops)
from jobs.errors import FaceNotFound, SchemaError
from jobs.ops import get_op
from jobs.schema import Lane, Recipe
from jobs.tiers import route
from pipelines.base import OpContext
from pipelines.faces import Face
from pipelines.portrait.nets import face_analyzer
from pipelines.portrait.skin import face_crop, feature_mask, skin_mask
from pipelines.registry import implementation


def run(op: str, image: Image.Image, lane: Lane = Lane.FINAL, **params: object) -> tuple:
    ctx = OpContext(lane=lane)
    out = implementation(op)(image, get_op(op).validate(params), ctx)
    return out, ctx.info


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def face(astronaut: Image.Image) -> Face:
    return face_analyzer().detect(astronaut)[0]


def high_frequency(rgb: np.ndarray, weight: np.ndarray) -> float:
    """Mean squared Laplacian of the luma, weighted: pores, freckles, noise."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    laplacian = cv2.Laplacian(gray, cv2.CV_32F)
    return float((laplacian**2 * weight).sum() / weight.sum())


def test_ops_are_in_the_catalogue_as_cpu_portrait_ops() -> None:
    for name in ("detect_faces", "skin_smooth", "remove_background"):
        spec = get_op(name)
        assert spec.family == "portrait" and spec.needs.cpu
    recipe = Recipe(steps=[{"skin_smooth": {}}, {"remove_background": {}}])
    assert route(recipe).name == "cpu"


@pytest.mark.parametrize(
    ("op", "params", "problem"),
    [
        ("skin_smooth", {"strength": 1.5}, "strength"),
        ("skin_smooth", {"radius": 3}, "radius"),
        ("remove_background", {"background": "color", "color": "red"}, "color"),
        ("remove_background", {"color": "#000000"}, "only with background='color'"),
        ("remove_background", {"method": "u2net"}, "method"),
        ("detect_faces", {"min_score": 0.1}, "min_score"),
    ],
)
def test_bad_params_are_refused_at_the_boundary(op: str, params: dict, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem):
        get_op(op).validate(params)


def test_skin_smooth_removes_texture_on_skin_only(astronaut: Image.Image, face: Face) -> None:
    before = np.asarray(astronaut)
    after = np.asarray(run("skin_smooth", astronaut, strength=0.8)[0])
    left, top, right, bottom = crop = face_crop(face, before.shape[:2])
    mask = skin_mask(before, face, crop)
    core = (mask > 0.9).astype(np.float32)
    patch_before, patch_after = before[top:bottom, left:right], after[top:bottom, left:right]
    ratio = high_frequency(patch_after, core) / high_frequency(patch_before, core)
    assert ratio < 0.5, ratio  # measured 0.43 (0.63 at strength 0.5, 0.33 at 1.0)

    # Eyes, brows and lips are not touched at all; nor is anything outside the face.
    features = feature_mask(before.shape[:2], face) > 0
    diff = np.abs(after.astype(int) - before.astype(int)).max(axis=2)
    assert diff[features].max() <= 1
    outside = np.ones(before.shape[:2], bool)
    outside[top:bottom, left:right] = False
    assert diff[outside].max() == 0
    # Skin colour is kept: smoothing must not shift the mean tone.
    for channel in range(3):
        shift = (
            patch_after[..., channel][core > 0].mean() - patch_before[..., channel][core > 0].mean()
        )
        assert abs(shift) < 2.0


def test_skin_mask_leaves_hair_and_background_out(astronaut: Image.Image, face: Face) -> None:
    rgb = np.asarray(astronaut)
    left, top, _, _ = crop = face_crop(face, rgb.shape[:2])
    mask = skin_mask(rgb, face, crop)
    x, y, w, h = face.box
    # Cheeks are skin; the hair above the forehead and the backdrop beside it are not.
    cheek = face.keypoint("nose_tip")
    assert mask[round(cheek[1]) - top, round(cheek[0] - 0.4 * face.eye_distance) - left] > 0.9
    assert mask[round(y - top + 2), round(x + w / 2 - left)] < 0.2  # hairline
    assert mask[round(y + h / 2 - top), 0] == 0.0  # backdrop at the crop's edge


def test_strength_orders_the_effect(astronaut: Image.Image) -> None:
    before = np.asarray(astronaut).astype(int)
    changes = [
        np.abs(np.asarray(run("skin_smooth", astronaut, strength=s)[0]).astype(int) - before).sum()
        for s in (0.0, 0.3, 0.9)
    ]
    assert changes[0] == 0 and changes[0] < changes[1] < changes[2]


def test_preview_lane_smooths_like_the_final(astronaut: Image.Image) -> None:
    big = astronaut.resize((1024, 1024), Image.Resampling.LANCZOS)
    final = np.asarray(run("skin_smooth", big, strength=0.6)[0]).astype(np.float32)
    preview = np.asarray(run("skin_smooth", big, Lane.PREVIEW, strength=0.6)[0])
    # Computed at reduced scale, the preview differs from the final by a level or two.
    assert np.abs(preview.astype(np.float32) - final).mean() < 1.0


def test_skin_smooth_keeps_alpha(astronaut: Image.Image) -> None:
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 77))
    out, info = run("skin_smooth", rgba)
    assert out.mode == "RGBA" and np.asarray(out.getchannel("A")).max() == 77
    assert info["faces"] == 1


def test_black_and_white_stays_black_and_white() -> None:
    out, info = run("skin_smooth", Image.fromarray(data.camera()))
    assert out.mode == "L" and info["faces"] == 1


def test_no_face_fails_or_passes_through_as_asked() -> None:
    coffee = Image.fromarray(data.coffee())
    with pytest.raises(FaceNotFound, match="no face found"):
        run("skin_smooth", coffee)
    out, info = run("skin_smooth", coffee, require_face=False)
    assert np.array_equal(np.asarray(out), np.asarray(coffee)) and info["faces"] == 0


def test_detect_faces_records_and_draws(astronaut: Image.Image, face: Face) -> None:
    out, info = run("detect_faces", astronaut)
    assert out is astronaut
    (recorded,) = info["faces"]
    assert recorded["box"] == [round(v, 1) for v in face.box]
    assert set(recorded["keypoints"]) == {
        "right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left",
    }  # fmt: skip
    drawn, _ = run("detect_faces", astronaut, annotate=True)
    x, y, _, _ = (round(v) for v in face.box)
    assert np.asarray(drawn)[y + 1, x + 20].tolist() == [0, 255, 0]  # the box's top edge
    with pytest.raises(FaceNotFound):
        run("detect_faces", Image.fromarray(data.rocket()))
