"""`remove_background`: mask quality against a hand-traced reference, outputs, fallbacks.

The selfie-model tests need MediaPipe's model file, read from a mediapipe 0.10.21
wheel in `.whl/` (`pip download --no-deps mediapipe==0.10.21 -d .whl`); without the
wheel they skip and say so. GrabCut needs no model and always runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import jobs.ops.portrait  # noqa: F401  (registers the portrait ops)
from bench.portrait import ROOT, astronaut_subject_mask, iou
from jobs.errors import FaceNotFound, InputInvalid, ModelUnavailable
from jobs.ops import get_op
from jobs.schema import Lane
from jobs.settings import Settings
from pipelines.base import OpContext
from pipelines.faces import FolderModels
from pipelines.portrait.nets import LOOKUPS
from pipelines.portrait.selfie_wheel import selfie_model_from_wheels
from pipelines.registry import implementation

SELFIE_IOU = 0.93  # measured 0.961
GRABCUT_IOU = 0.82  # measured 0.863


@pytest.fixture(autouse=True)
def _fresh_lookups() -> Iterator[None]:
    LOOKUPS.clear()  # each test brings its own model source
    yield
    LOOKUPS.clear()


@pytest.fixture(scope="module")
def selfie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    if selfie_model_from_wheels(ROOT / ".whl", root / "selfie-segmentation" / "1") is None:
        pytest.skip(
            "no mediapipe 0.10.21 wheel in .whl/: "
            "`pip download --no-deps --only-binary=:all: mediapipe==0.10.21 -d .whl`"
        )
    return root


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def remove(
    image: Image.Image, models: object = None, lane: Lane = Lane.FINAL, **params: object
) -> tuple[Image.Image, dict, OpContext]:
    ctx = OpContext(lane=lane, models=models)
    extras = params.pop("extra_inputs", [])
    ctx.extra_inputs = list(extras)  # type: ignore[call-overload]
    typed = get_op("remove_background").validate(params)
    out = implementation("remove_background")(image, typed, ctx)
    return out, ctx.info, ctx


def alpha_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.getchannel("A"))


def test_selfie_mask_matches_the_traced_astronaut(astronaut: Image.Image, selfie_dir: Path) -> None:
    out, info, _ = remove(astronaut, FolderModels(selfie_dir), method="selfie")
    assert out.mode == "RGBA" and info["method"] == "selfie"
    score = iou(alpha_of(out) >= 128, astronaut_subject_mask())
    assert score >= SELFIE_IOU, score


def test_grabcut_mask_matches_the_traced_astronaut(astronaut: Image.Image) -> None:
    out, info, _ = remove(astronaut, method="grabcut")
    assert info["method"] == "grabcut"
    score = iou(alpha_of(out) >= 128, astronaut_subject_mask())
    assert score >= GRABCUT_IOU, score


def test_cutout_is_transparent_around_an_opaque_person(
    astronaut: Image.Image, selfie_dir: Path
) -> None:
    out, _, _ = remove(astronaut, FolderModels(selfie_dir))
    alpha = alpha_of(out)
    assert alpha[20, 480] == 0 and alpha[20, 20] == 0  # backdrop beside the shuttle, flag
    assert alpha[120, 222] == 255 and alpha[400, 150] == 255  # face, suit
    # Colour is the photo's own wherever the person is.
    rgb = np.asarray(out.convert("RGB"))
    assert np.array_equal(rgb[120, 222], np.asarray(astronaut)[120, 222])


def test_colour_and_image_backdrops(astronaut: Image.Image) -> None:
    out, _, _ = remove(astronaut, method="grabcut", background="color", color="#00ff00")
    assert out.mode == "RGB"
    assert np.asarray(out)[10, 500].tolist() == [0, 255, 0]
    backdrop = Image.fromarray(data.coffee())  # 600x400: scaled to cover 512x512
    out, _, _ = remove(astronaut, method="grabcut", background="image", extra_inputs=[backdrop])
    corner = np.asarray(out)[5, 5].astype(int)
    expected = np.asarray(backdrop.resize((768, 512)).crop((128, 0, 640, 512)))[5, 5]
    assert np.abs(corner - expected.astype(int)).max() < 12
    assert np.array_equal(np.asarray(out)[120, 222], np.asarray(astronaut)[120, 222])


def test_image_backdrop_without_an_image_is_refused(astronaut: Image.Image) -> None:
    with pytest.raises(InputInvalid, match="extra_inputs"):
        remove(astronaut, background="image")


def test_auto_falls_back_to_grabcut_and_says_why(astronaut: Image.Image, tmp_path: Path) -> None:
    out, info, _ = remove(astronaut, FolderModels(tmp_path))
    assert info["method"] == "grabcut"
    assert "selfie-segmentation@1" in info["fallback"]
    assert iou(alpha_of(out) >= 128, astronaut_subject_mask()) >= GRABCUT_IOU


def test_selfie_without_the_model_names_it(astronaut: Image.Image, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="selfie-segmentation@1"):
        remove(astronaut, FolderModels(tmp_path), method="selfie")
    with pytest.raises(ModelUnavailable, match="no model store"):
        remove(astronaut, None, method="selfie")


def test_grabcut_needs_a_face_to_seed_it() -> None:
    with pytest.raises(FaceNotFound):
        remove(Image.fromarray(data.coffee()), method="grabcut")


def test_selfie_model_through_a_real_model_store(
    astronaut: Image.Image, selfie_dir: Path, tmp_path: Path
) -> None:
    # Published and pulled the way a worker does: manifest, sha256, pull-through cache.
    from model_store import ModelStore

    store = ModelStore.from_settings(
        Settings(home=tmp_path / "home", model_store=str(tmp_path / "store"))
    )
    store.publish(selfie_dir / "selfie-segmentation" / "1", "selfie-segmentation", "1",
                  pipeline_class="mediapipe.SelfieSegmentation", license="apache-2.0")  # fmt: skip
    out, info, _ = remove(astronaut, store, method="selfie")
    assert info["method"] == "selfie"
    assert iou(alpha_of(out) >= 128, astronaut_subject_mask()) >= SELFIE_IOU


def test_preview_lane_mask_matches_the_final(astronaut: Image.Image, selfie_dir: Path) -> None:
    models = FolderModels(selfie_dir)
    final, _, _ = remove(astronaut, models)
    preview, _, _ = remove(astronaut, models, Lane.PREVIEW)
    assert iou(alpha_of(final) >= 128, alpha_of(preview) >= 128) > 0.99


def test_existing_alpha_is_kept(astronaut: Image.Image) -> None:
    rgba = astronaut.convert("RGBA")
    hole = Image.new("L", rgba.size, 255)
    hole.paste(0, (200, 300, 260, 360))  # a cut already made in the suit
    rgba.putalpha(hole)
    out, _, _ = remove(rgba, method="grabcut")
    assert alpha_of(out)[330, 230] == 0 and alpha_of(out)[400, 150] == 255
