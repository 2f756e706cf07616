"""The identity op's logic without a generator: keypoint drawing, reference faces and
their embeddings, portrait sizing, and the identity gate's decisions, scored by the
real SFace recogniser on real photos standing in for renders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("diffusers")

import jobs.ops.identity  # noqa: F401  (registers the op until jobs.ops imports it)
from jobs.errors import FaceNotFound, InputInvalid
from jobs.ops import get_op
from jobs.ops.identity import IdentityPortraitParams
from pipelines.faces import Face, FaceAnalyzer
from pipelines.identity.gate import (
    MAX_SEED,
    GateResult,
    IdentityMatcher,
    Match,
    attempt_seeds,
    run_gate,
    verdict,
)
from pipelines.identity.keypoints import COLORS, draw_keypoints, map_keypoints
from pipelines.identity.portrait import portrait_plan
from pipelines.identity.subject import average_embeddings, find_subject

pytestmark = pytest.mark.gen

Point = tuple[float, float]
KEYPOINTS: tuple[Point, Point, Point, Point, Point] = (
    (60.0, 40.0),
    (140.0, 40.0),
    (100.0, 70.0),
    (70.0, 100.0),
    (130.0, 100.0),
)


def params(**raw: object) -> IdentityPortraitParams:
    validated = get_op("identity_portrait").validate({"prompt": "a portrait", **raw})
    assert isinstance(validated, IdentityPortraitParams)
    return validated


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer.load()


@pytest.fixture(scope="module")
def grace_hopper() -> Image.Image:
    cbook = pytest.importorskip("matplotlib.cbook")
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return Image.open(path).convert("RGB")


# -- keypoints -------------------------------------------------------------------------


def test_keypoints_are_drawn_as_instantid_colours_dimmed_limbs_on_black() -> None:
    drawn = np.asarray(draw_keypoints((200, 150), KEYPOINTS))
    assert drawn.shape == (150, 200, 3)
    for (x, y), color in zip(KEYPOINTS, COLORS, strict=True):
        assert tuple(drawn[int(y), int(x)]) == color
    # Halfway from the image-left eye (red) to the nose: its limb, dimmed to 60 %.
    assert tuple(drawn[55, 80]) == (153, 0, 0)
    assert not drawn[140, 10].any() and not drawn[5, 195].any()


def test_strokes_scale_with_the_canvas_as_trained_at_1024() -> None:
    big = [(x * 5, y * 5) for x, y in KEYPOINTS]  # a 1000 px canvas
    nose_x, nose_y = (int(v) for v in big[2])
    large = np.asarray(draw_keypoints((1000, 750), big))
    assert tuple(large[nose_y, nose_x + 8]) == COLORS[2], "a 10 px disc at ~1024 px"
    small = np.asarray(draw_keypoints((200, 150), KEYPOINTS))
    assert tuple(small[70, 100 + 8]) != COLORS[2], "a 2 px disc at 200 px"
    with pytest.raises(ValueError, match="5 keypoints"):
        draw_keypoints((200, 150), KEYPOINTS[:4])


def test_keypoints_follow_the_photo_onto_the_canvas() -> None:
    face = Face(box=(0, 0, 10, 10), score=0.9, keypoints=KEYPOINTS)
    mapped = map_keypoints(face, (200, 150), (96, 72))
    assert mapped[0] == pytest.approx((60 * 0.48, 40 * 0.48))
    assert mapped[4] == pytest.approx((130 * 0.48, 100 * 0.48))


# -- references, embeddings, sizes ------------------------------------------------------


def test_embeddings_are_averaged_as_unit_vectors() -> None:
    mean = average_embeddings([np.array([1.0, 0.0]), np.array([0.0, 10.0])])
    assert mean == pytest.approx([2**-0.5, 2**-0.5], abs=1e-6), "each reference counts once"
    assert average_embeddings([np.array([3.0, 4.0])]) == pytest.approx([0.6, 0.8])
    for bad in ([], [np.zeros(2)], [np.array([1.0, 0.0]), np.array([-1.0, 0.0])]):
        with pytest.raises(ValueError):
            average_embeddings(bad)


def test_portrait_keeps_the_pose_photos_aspect_at_full_size() -> None:
    plan = portrait_plan((451, 300), side=96, multiple=16)
    assert plan.out == (96, 64) and plan.work == (96, 64)
    small = portrait_plan((100, 50), side=1024, multiple=32)
    assert small.out == (1024, 512), "a small photo still gives a full-size portrait"
    odd = portrait_plan((683, 1024), side=1024, multiple=32)
    assert odd.out == (683, 1024) and odd.work == (672, 1024)


def test_every_reference_and_the_pose_photo_need_a_face_named_in_the_error(
    astronaut: Image.Image, coffee: Image.Image, analyzer: FaceAnalyzer
) -> None:
    with pytest.raises(FaceNotFound, match=r"^input image: no face"):
        find_subject(coffee, [], params(), analyzer)
    with pytest.raises(FaceNotFound, match=r"^extra input 1: no face"):
        find_subject(astronaut, [coffee], params(), analyzer)
    with pytest.raises(FaceNotFound, match=r"^extra input 2: no face"):
        find_subject(astronaut, [astronaut, coffee], params(pose="image"), analyzer)
    with pytest.raises(InputInvalid, match=r"pose photo .* last extra input"):
        find_subject(astronaut, [], params(pose="image"), analyzer)
    banner = astronaut.resize((512, 100))
    with pytest.raises(InputInvalid, match=r"aspect ratio .* crop it first"):
        find_subject(banner, [], params(), analyzer)


def test_the_pose_photo_poses_and_is_not_a_reference(
    astronaut: Image.Image, grace_hopper: Image.Image, analyzer: FaceAnalyzer
) -> None:
    subject = find_subject(astronaut, [grace_hopper], params(pose="image"), analyzer)
    assert [r.label for r in subject.references] == ["input image"]
    assert subject.pose.label == "extra input 1" and subject.pose.image is grace_hopper
    both = find_subject(astronaut, [grace_hopper], params(), analyzer)
    assert len(both.references) == 2 and both.pose is both.references[0]
    assert len(both.sface_embeddings()) == 2


# -- the gate ------------------------------------------------------------------------------


def test_attempt_seeds_start_at_the_jobs_and_repeat_per_job() -> None:
    seeds = attempt_seeds(7, 3)
    assert seeds[0] == 7 and len(set(seeds)) == 3
    assert seeds == attempt_seeds(7, 3)
    assert all(0 <= s < MAX_SEED for s in seeds)
    assert not set(attempt_seeds(8, 3)) & set(seeds), "neighbouring jobs share no seeds"


def fake_gate(scores: list[float | None], threshold: float = 0.363) -> tuple[list[int], GateResult]:
    """Run the gate over renders whose scores are given; returns the seeds rendered."""
    rendered: list[int] = []

    def render(seed: int) -> Image.Image:
        rendered.append(seed)
        image = Image.new("L", (1, 1))
        image.info["seed"] = seed
        return image

    def score(image: Image.Image) -> Match:
        found = scores[int(image.info["seed"])]
        return Match.from_similarity(np.array([[] if found is None else [found]]))

    result = run_gate(render, score, [0, 1, 2], threshold)
    return rendered, result


def test_the_gate_stops_at_the_first_render_that_passes() -> None:
    rendered, result = fake_gate([0.5, 0.9, 0.9])
    assert rendered == [0] and verdict(result, "fail") == 0
    rendered, result = fake_gate([0.1, None, 0.4])
    assert rendered == [0, 1, 2] and verdict(result, "fail") == 2


def test_a_failed_gate_fails_the_job_or_returns_the_closest_render() -> None:
    _, mismatch = fake_gate([0.2, None, 0.3])
    with pytest.raises(InputInvalid, match=r"3 renders .*seed 0: 0\.200.*seed 1: no face"):
        verdict(mismatch, "fail")
    assert verdict(mismatch, "best") == 2
    info = mismatch.as_info(2)
    assert info["identity_scores"] == [0.2, None, 0.3] and info["identity_passed"] is False
    _, faceless = fake_gate([None, None, None])
    with pytest.raises(FaceNotFound, match="no face was found in any of 3 renders"):
        verdict(faceless, "fail")
    assert verdict(faceless, "best") == 0
    rendered, off = fake_gate([None, None, None], threshold=0.0)
    assert rendered == [0] and verdict(off, "fail") == 0, "min_identity 0 accepts any render"


def test_sface_scores_real_photos_standing_in_for_renders(
    astronaut: Image.Image, coffee: Image.Image, grace_hopper: Image.Image, analyzer: FaceAnalyzer
) -> None:
    reference = find_subject(astronaut, [], params(), analyzer)
    scorer = IdentityMatcher(analyzer, [reference.sface_embeddings()])
    renders = {11: grace_hopper, 12: coffee, 13: ImageOps.mirror(astronaut).resize((300, 300))}
    result = run_gate(renders.__getitem__, scorer, [11, 12, 13], 0.363)
    scores = [a.score for a in result.attempts]
    assert scores[0] is not None and scores[0] < 0.3, "another person"
    assert scores[1] is None, "no face in the coffee cup"
    assert scores[2] is not None and scores[2] > 0.8, "the same person, mirrored and smaller"
    assert verdict(result, "fail") == 2 and result.images[2] is renders[13]
