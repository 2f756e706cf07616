"""The multi-identity op's logic without a generator: the multi-face gate's assignment,
scored by the real SFace recogniser on real photos (scikit-image's astronaut and
matplotlib's Grace Hopper) standing in for renders; reference faces found, named and
aligned; UNO's rotary offsets; image sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("diffusers")

import torch

from jobs.errors import FaceNotFound, InputInvalid, SchemaError
from jobs.ops import get_op
from jobs.ops.multi_identity import MultiIdentityParams
from pipelines.faces import Face, FaceAnalyzer
from pipelines.identity.gate import IdentityMatcher, Match, run_gate, verdict
from pipelines.multi_identity.model import image_plan
from pipelines.multi_identity.people import (
    EYE_LINE,
    FACE_SPAN,
    align_face,
    find_people,
    reference_side,
)
from pipelines.multi_identity.positions import reference_offsets, uno_ids

pytestmark = pytest.mark.gen

THRESHOLD = 0.363


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer.load()


def side_by_side(*photos: Image.Image, height: int = 300) -> Image.Image:
    """A 'group photo': the photos scaled to one height, left to right."""
    scaled = [p.resize((round(p.width * height / p.height), height)) for p in photos]
    group = Image.new("RGB", (sum(p.width for p in scaled), height))
    left = 0
    for photo in scaled:
        group.paste(photo, (left, 0))
        left += photo.width
    return group


# -- assignment on a matrix ---------------------------------------------------------------


def test_the_assignment_maximises_total_similarity_not_each_person_greedily() -> None:
    # Greedy (person 0 takes its best face first) would leave person 1 with 0.10.
    match = Match.from_similarity(np.array([[0.90, 0.80], [0.85, 0.10]]))
    assert match.assignment == (1, 0)
    assert match.scores == (0.80, 0.85) and match.score == 0.80
    assert match.passes(THRESHOLD)


def test_a_person_without_a_face_of_their_own_fails_the_render() -> None:
    one_face = Match.from_similarity(np.array([[0.9], [0.8]]))
    assert one_face.assignment == (0, None), "two people cannot share one face"
    assert one_face.score is None and not one_face.passes(THRESHOLD)
    no_face = Match.from_similarity(np.zeros((2, 0)))
    assert no_face.assignment == (None, None) and no_face.faces == 0
    assert no_face.passes(0.0), "min_identity 0 accepts any render"
    weak = Match.from_similarity(np.array([[0.9, 0.1], [0.1, 0.3]]))
    assert weak.assignment == (0, 1) and not weak.passes(THRESHOLD), "0.3 is another person"


# -- assignment on real photos -------------------------------------------------------------


def test_two_people_are_assigned_their_own_faces_wherever_they_stand(
    analyzer: FaceAnalyzer, astronaut: Image.Image, grace_hopper: Image.Image
) -> None:
    matcher = IdentityMatcher(
        analyzer,
        [
            [analyzer.detect(astronaut, embed=True)[0].embedding],
            [analyzer.detect(grace_hopper, embed=True)[0].embedding],
        ],
    )
    # the render shows Hopper on the left, the astronaut (mirrored) on the right:
    # the order of the references says nothing about where people stand
    group = side_by_side(grace_hopper, ImageOps.mirror(astronaut))
    match = matcher(group)
    assert match.faces == 2
    left_face = min(range(2), key=lambda f: match.boxes[f][0])
    right_face = 1 - left_face
    assert match.assignment == (right_face, left_face)
    assert all(s is not None and s > 0.8 for s in match.scores)
    assert match.passes(THRESHOLD)
    # pairing by position (reference n <-> n-th face from the left) would have failed
    assert match.similarity[0, left_face] < 0.3 and match.similarity[1, right_face] < 0.3

    # a swapped pair: Hopper twice, no astronaut. Hopper's reference gets one Hopper,
    # the astronaut's reference gets the other Hopper, and is rejected
    twice = matcher(side_by_side(grace_hopper, ImageOps.mirror(grace_hopper)))
    assert twice.faces == 2 and None not in twice.assignment
    astronaut_score, hopper_score = twice.scores
    assert astronaut_score is not None and astronaut_score < 0.3
    assert hopper_score is not None and hopper_score > 0.8
    assert not twice.passes(THRESHOLD)


def test_the_gate_rerenders_until_everyone_is_there_and_records_every_attempt(
    analyzer: FaceAnalyzer,
    astronaut: Image.Image,
    grace_hopper: Image.Image,
    coffee: Image.Image,
) -> None:
    people = find_people(astronaut, [grace_hopper], analyzer)
    matcher = IdentityMatcher(analyzer, [[p.embedding] for p in people])
    renders = {
        5: side_by_side(grace_hopper, ImageOps.mirror(grace_hopper)),  # astronaut missing
        6: coffee,  # nobody
        7: side_by_side(astronaut, grace_hopper),  # both
    }
    result = run_gate(renders.__getitem__, matcher, [5, 6, 7], THRESHOLD)
    assert [a.seed for a in result.attempts] == [5, 6, 7]
    assert verdict(result, "fail", [p.label for p in people]) == 2
    info = result.as_info(2)
    assert info["identity_passed"] is True and info["seed"] == 7
    first, nobody, both = info["identity_matches"]
    assert len(first["similarity"]) == 2 and len(first["similarity"][0]) == 2
    assert nobody == {"similarity": [[], []], "assignment": [None, None], "faces": []}
    assert sorted(both["assignment"]) == [0, 1]

    # without the third render the job fails, naming who was not matched and how well
    failed = run_gate(renders.__getitem__, matcher, [5, 6], THRESHOLD)
    with pytest.raises(InputInvalid) as raised:
        verdict(failed, "fail", [p.label for p in people])
    message = raised.value.message
    assert "seed 5: reference 1 (input image) 0." in message
    assert "seed 6: reference 1 (input image) no face, reference 2 (extra input 1) no face" in (
        message
    )
    assert verdict(failed, "best") == 0, "the render with people in it beats the empty one"


def test_renders_with_no_face_at_all_fail_as_face_not_found(
    analyzer: FaceAnalyzer, astronaut: Image.Image, grace_hopper: Image.Image, coffee: Image.Image
) -> None:
    people = find_people(astronaut, [grace_hopper], analyzer)
    matcher = IdentityMatcher(analyzer, [[p.embedding] for p in people])
    result = run_gate(lambda seed: coffee, matcher, [1, 2], THRESHOLD)
    with pytest.raises(FaceNotFound, match="no face was found in any of 2 renders"):
        verdict(result, "fail")


# -- references ------------------------------------------------------------------------


def test_a_reference_without_a_face_fails_naming_it(
    analyzer: FaceAnalyzer, astronaut: Image.Image, coffee: Image.Image
) -> None:
    with pytest.raises(FaceNotFound, match=r"^reference 2 \(extra input 1\): no face"):
        find_people(astronaut, [coffee], analyzer)
    with pytest.raises(InputInvalid, match="1-4 reference photos"):
        find_people(astronaut, [astronaut] * 4, analyzer)
    with pytest.raises(InputInvalid, match=r"reference 2 \(extra input 1\) is 600x40"):
        find_people(astronaut, [coffee.resize((600, 40))], analyzer)


def test_alignment_levels_the_eyes_and_puts_them_at_one_place_and_scale() -> None:
    # two dots for eyes on a line tilted by ~27 degrees, 60 px apart
    canvas = Image.new("RGB", (300, 300), "gray")
    right, left = (100.0, 120.0), (153.5, 147.2)
    for (x, y), colour in ((right, "red"), (left, "blue")):
        canvas.paste(colour, (round(x) - 2, round(y) - 2, round(x) + 3, round(y) + 3))
    mouth = ((110.0, 190.0), (150.0, 210.0))
    face = Face((60.0, 80.0, 150.0, 160.0), 0.9, (right, left, (125.0, 165.0), *mouth))
    side = 240
    aligned = np.asarray(align_face(canvas, face, side)).astype(int)

    def centre(rgb: tuple[int, int, int]) -> tuple[float, float]:
        ys, xs = np.nonzero(np.abs(aligned - rgb).sum(axis=2) < 60)
        assert len(xs), f"dot {rgb} lost"
        return float(xs.mean()), float(ys.mean())

    (rx, ry), (lx, ly) = centre((255, 0, 0)), centre((0, 0, 255))
    assert abs(ly - ry) < 1.5, "eyes level"
    assert lx > rx, "not mirrored"
    assert (rx + lx) / 2 == pytest.approx(side / 2, abs=1.5)
    assert (ry + ly) / 2 == pytest.approx(side * EYE_LINE, abs=1.5)
    assert lx - rx == pytest.approx(side / FACE_SPAN, abs=1.5)


def test_a_real_face_is_aligned_where_the_detector_finds_it_again(
    analyzer: FaceAnalyzer, astronaut: Image.Image
) -> None:
    (face,) = analyzer.detect(astronaut)
    side = 256
    aligned = align_face(astronaut, face, side)
    assert aligned.size == (side, side) and aligned.mode == "RGB"
    (found,) = analyzer.detect(aligned)
    (rx, ry), (lx, ly) = found.keypoints[:2]
    assert abs(ly - ry) < 8, "level within YuNet's keypoint noise (a few px at this size)"
    assert abs((rx + lx) / 2 - side / 2) < 6 and abs((ry + ly) / 2 - side * EYE_LINE) < 6
    assert found.eye_distance == pytest.approx(side / FACE_SPAN, rel=0.1)


def test_reference_sides_follow_unos_defaults_on_the_latent_grid() -> None:
    assert reference_side(None, 1, 16) == 512 and reference_side(None, 3, 16) == 320
    assert reference_side(210, 2, 16) == 208
    assert reference_side(None, 2, 16, scale=512 / 768) == 208  # a preview's
    assert reference_side(64, 2, 16, scale=0.1) == 16


# -- positions and sizes -------------------------------------------------------------------


def test_each_reference_sits_diagonally_past_the_target_and_the_ones_before() -> None:
    target, refs = (4, 6), [(2, 2), (3, 1)]
    assert reference_offsets(target, refs) == [(4, 6), (6, 8)]
    ids = uno_ids(target, refs)
    assert ids.shape == (4 * 6 + 2 * 2 + 3 * 1, 3)
    assert (ids[:, 0] == 0).all(), "UNO keeps the index axis at 0 (Kontext sets 1)"
    first = ids[24:28]
    assert first[:, 1].tolist() == [4, 4, 5, 5] and first[:, 2].tolist() == [6, 7, 6, 7]
    second = ids[28:]
    assert second[:, 1].tolist() == [6, 7, 8] and second[:, 2].tolist() == [8, 8, 8]


def test_image_sizes_keep_the_asked_aspect_and_work_on_the_grid() -> None:
    wide = image_plan(16 / 9, 96, 16)
    assert wide.out == (96, 54) and wide.work == (96, 48)
    tall = image_plan(1 / 2, 100, 16)
    assert tall.out == (50, 100) and tall.work == (48, 96)


def test_params_validate_at_the_boundary() -> None:
    params = get_op("multi_identity").validate({"prompt": "two friends at a cafe"})
    assert isinstance(params, MultiIdentityParams)
    assert (params.steps, params.guidance, params.max_side) == (25, 4.0, 768)
    assert params.min_identity == THRESHOLD and params.aspect() == 1.0
    with pytest.raises(SchemaError, match="aspect_ratio 5:1 is beyond 4:1"):
        get_op("multi_identity").validate({"prompt": "x", "aspect_ratio": "5:1"})
    with pytest.raises(SchemaError, match="negative_prompt"):
        get_op("multi_identity").validate({"prompt": "x", "negative_prompt": "blur"})


# -- LoRA layout -------------------------------------------------------------------------

FLUX_DEV: dict[str, Any] = {
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "in_channels": 64,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}


def test_a_uno_layout_lora_at_flux_dev_size_lands_on_flux_dev_layers() -> None:
    """UNO's / UMO's published layout, at FLUX.1-dev's geometry (19 double and 38 single
    blocks, 3072 wide; rank 4 here, 512 in the real files), converted by diffusers and
    checked against a FLUX.1-dev transformer built without memory (meta device)."""
    from diffusers import FluxTransformer2DModel

    from pipelines.generative import tiny_parts
    from pipelines.multi_identity.adapters import linear_shapes, misfits
    from pipelines.multi_identity.diffusion import FluxUNOPipeline
    from pipelines.multi_identity.tiny import uno_lora_state

    with torch.device("meta"):
        flux_dev = FluxTransformer2DModel(**FLUX_DEV)
    state = uno_lora_state(flux_dev)
    assert state["single_blocks.37.processor.proj_lora.down.weight"].shape == (4, 15360)
    converted = FluxUNOPipeline.lora_state_dict(dict(state))
    assert misfits(converted, linear_shapes(flux_dev)) == []
    layers = {k.rsplit(".lora_", 1)[0] for k in converted}
    assert len(layers) == 19 * 8 + 38 * 4, "q, k, v, out of both streams; q, k, v, proj_out"
    assert "transformer.single_transformer_blocks.37.proj_out" in layers

    tiny = tiny_parts.flux_transformer(tiny_parts.FLUX_LATENT_CHANNELS * 4)
    too_big = misfits(converted, linear_shapes(tiny))
    assert any("takes 32 features where the adapter has 3072" in p for p in too_big)
    assert any("layers are not in this transformer" in p for p in too_big)
    too_small = FluxUNOPipeline.lora_state_dict(uno_lora_state(tiny))
    assert any("where the adapter has 32" in p for p in misfits(too_small, linear_shapes(flux_dev)))
