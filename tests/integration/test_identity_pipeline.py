"""`identity_portrait` on the tiny InstantID model: published, pulled from the store,
loaded by the worker's resident cache (adapter and face encoder included), run on CPU.

Random weights draw no faces, so these tests check the wiring a real model relies on
(the face tokens reach IdentityNet, the adapter and keypoints steer the render, seeds
repeat, sizes keep the pose photo's aspect, faults fail early) and the gate's loop on
what such renders really are: faceless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

import jobs.ops.identity  # noqa: F401  (registers the op until jobs.ops imports it)
from jobs.errors import FaceNotFound, InputInvalid, ModelUnavailable
from jobs.ops import get_op
from jobs.ops.identity import IdentityPortraitParams
from jobs.schema import Lane
from jobs.settings import Settings
from pipelines.base import OpContext

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

from model_store import ModelStore, VariantSpec  # noqa: E402
from pipelines.identity import OPS, IdentityPortrait  # noqa: E402
from pipelines.identity.subject import average_embeddings, find_subject  # noqa: E402
from pipelines.portrait.nets import face_analyzer  # noqa: E402
from workers.resident import ResidentModels  # noqa: E402

BUDGET = {"max_side": 96, "preview_side": 64, "steps": 3, "preview_steps": 2}


@pytest.fixture(scope="module")
def portrait_photo() -> Image.Image:
    """A 3:2 crop of the astronaut around her face: not square, not on the grid."""
    from samples.photos import load_photo

    return load_photo("astronaut").crop((60, 0, 360, 200))


def identity_params(**raw: Any) -> IdentityPortraitParams:
    params = get_op("identity_portrait").validate({"prompt": "a portrait", **BUDGET, **raw})
    assert isinstance(params, IdentityPortraitParams)
    return params


def run(image: Image.Image, raw: dict[str, Any], models: Any, **ctx: Any) -> Image.Image:
    context = OpContext(models=models, **ctx)
    out = OPS["identity_portrait"](image, identity_params(**raw), context)
    out.info = dict(context.info)  # what the op recorded, for the assertions
    return out


def same(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_a_seed_repeats_its_portrait_at_the_pose_photos_aspect(
    portrait_photo: Image.Image, resident: Any
) -> None:
    a = run(portrait_photo, {"min_identity": 0}, resident, seed=7)
    b = run(portrait_photo, {"min_identity": 0}, resident, seed=7)
    c = run(portrait_photo, {"min_identity": 0}, resident, seed=8)
    assert a.size == (96, 64) and a.mode == "RGB", "3:2 kept, longest side max_side"
    assert same(a, b) and not same(a, c)
    assert a.info["work_size"] == [96, 64] and a.info["decoder"] == "full"
    assert a.info["model"] == "instantid-sdxl@tiny" and a.info["seed"] == 7
    preview = run(portrait_photo, {}, resident, seed=7, lane=Lane.PREVIEW)
    assert preview.size == (64, 43) and preview.info["decoder"] == "tiny"
    assert preview.info["identity_checked"] is False and "identity_scores" not in preview.info


def test_identitynet_attends_to_the_face_tokens_not_the_text(
    portrait_photo: Image.Image, resident: Any
) -> None:
    pipeline = resident.get("instantid-sdxl", Lane.FINAL)
    assert isinstance(pipeline, IdentityPortrait)
    pipe = pipeline.pipe
    seen: dict[str, list[Any]] = {"controlnet": [], "unet": [], "projection": []}

    def controlnet_input(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen["controlnet"].append(kwargs["encoder_hidden_states"].detach().clone())

    def unet_input(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen["unet"].append(kwargs["encoder_hidden_states"].detach().clone())

    def projected(module: Any, args: Any, output: Any) -> None:
        seen["projection"].append(output[0].detach().clone())

    hooks = [
        pipe.controlnet.register_forward_pre_hook(controlnet_input, with_kwargs=True),
        pipe.unet.register_forward_pre_hook(unet_input, with_kwargs=True),
        pipe.unet.encoder_hid_proj.register_forward_hook(projected),
    ]
    try:
        run(portrait_photo, {"min_identity": 0}, resident, seed=3)
    finally:
        for hook in hooks:
            hook.remove()

    # What the job's face should give: the reference's ArcFace embedding, projected
    # by the adapter's Resampler, zeros (projected) for the unguided half.
    subject = find_subject(portrait_photo, [], identity_params(), face_analyzer())
    embedding = pipeline.face_embedding(subject)
    expected = pipe.face_tokens(pipe.face_embeds(embedding, guided=True)).detach()
    tokens = seen["controlnet"]
    assert len(tokens) == 3, "IdentityNet runs once per denoising step"
    assert tokens[0].shape == (2, 16, 64), "16 face tokens, not 77 text tokens"
    for step in tokens:
        assert np.allclose(step.numpy(), expected.numpy(), atol=1e-6)
    assert not np.allclose(tokens[0][0].numpy(), tokens[0][1].numpy()), "a face, not zeros"
    # The UNet reads the text, and its adapter projects the very same face tokens.
    assert seen["unet"][0].shape == (2, 77, 64)
    projection = seen["projection"][0].reshape(2, 16, 64)
    assert np.allclose(projection.numpy(), expected.numpy(), atol=1e-6)


def test_identity_strength_control_strength_and_pose_each_steer_the_render(
    portrait_photo: Image.Image, resident: Any
) -> None:
    mirrored = ImageOps.mirror(portrait_photo)  # same aspect, keypoints elsewhere
    base = {"min_identity": 0, "pose": "image"}

    def render(**raw: Any) -> Image.Image:
        return run(portrait_photo, {**base, **raw}, resident, seed=5, extra_inputs=[mirrored])

    reference = render()
    assert not same(reference, render(identity_strength=0.0)), "the face adapter is wired"
    assert not same(reference, render(control_strength=0.0)), "IdentityNet is wired"
    posed_by_reference = run(portrait_photo, {"min_identity": 0}, resident, seed=5)
    assert not same(reference, posed_by_reference), "the pose photo's keypoints are drawn"
    # With IdentityNet off, where the keypoints are no longer matters.
    off = run(portrait_photo, {"min_identity": 0, "control_strength": 0}, resident, seed=5)
    assert same(off, render(control_strength=0.0))


def test_several_references_are_averaged_and_recorded(
    portrait_photo: Image.Image, resident: Any
) -> None:
    second = ImageOps.mirror(portrait_photo).resize((240, 160))
    out = run(portrait_photo, {"min_identity": 0}, resident, seed=1, extra_inputs=[second])
    assert out.info["references"] == 2
    pipeline = resident.get("instantid-sdxl", Lane.FINAL)
    params = identity_params()
    both = find_subject(portrait_photo, [second], params, face_analyzer())
    singles = [
        pipeline.face_embedding(find_subject(photo, [], params, face_analyzer())).numpy()
        for photo in (portrait_photo, second)
    ]
    averaged = pipeline.face_embedding(both).numpy()
    assert np.allclose(averaged, average_embeddings(singles), atol=1e-5)
    assert not np.allclose(averaged, singles[0], atol=1e-3)


def test_the_gate_rerenders_faceless_portraits_with_new_seeds_then_fails(
    portrait_photo: Image.Image, resident: Any
) -> None:
    best = run(portrait_photo, {"on_mismatch": "best"}, resident, seed=7)
    info = best.info
    assert info["attempts"] == 3 and info["identity_scores"] == [None, None, None]
    assert info["identity_seeds"][0] == 7 and len(set(info["identity_seeds"])) == 3
    assert info["identity_passed"] is False and info["identity_checked"] is True
    first = run(portrait_photo, {"max_rerenders": 0, "on_mismatch": "best"}, resident, seed=7)
    assert same(best, first), "'best' of faceless renders is the first, the job's seed"
    with pytest.raises(FaceNotFound, match="no face was found in any of 2 renders"):
        run(portrait_photo, {"max_rerenders": 1}, resident, seed=7)


def test_a_faceless_photo_fails_before_any_model_loads(
    coffee: Image.Image, portrait_photo: Image.Image, tiny_models: Any
) -> None:
    models = ResidentModels(tiny_models.store, "a10", "cpu", budget_gb=8.0)
    with pytest.raises(FaceNotFound, match=r"^input image: no face"):
        run(coffee, {}, models)
    with pytest.raises(FaceNotFound, match=r"^extra input 1: no face"):
        run(portrait_photo, {}, models, extra_inputs=[coffee])
    with pytest.raises(InputInvalid, match="pose photo"):
        run(portrait_photo, {"pose": "image"}, models)
    assert models.stats.loads == 0 and models.resident() == []


def test_models_that_are_not_instantid_or_lack_the_encoder_are_refused(
    portrait_photo: Image.Image, resident: Any, tiny_models: Any, tmp_path: Path
) -> None:
    with pytest.raises(InputInvalid, match="ip2p@stable is a StableDiffusionInstructPix2Pix"):
        run(portrait_photo, {"model": "ip2p@stable"}, resident)
    settings = Settings(home=tmp_path, model_store=str(tmp_path / "store"))
    store = ModelStore.from_settings(settings)
    folders = tiny_models.folders
    store.publish(folders["instantid-sdxl"], "instantid-bare", "1")
    store.publish(folders["arcface-antelopev2"], "arcface-antelopev2", "tiny")
    store.publish(
        folders["instantid-sdxl"],
        "instantid-unet8",
        "1",
        variants=[VariantSpec(name="int8", kind="int8_weight_only", tiers=["cpu"])],
        components={"face_encoder": "arcface-antelopev2@tiny"},
    )
    models = ResidentModels(store, "cpu", "cpu", budget_gb=8.0)
    with pytest.raises(ModelUnavailable, match=r"links no face encoder.*--component face_encoder"):
        run(portrait_photo, {"model": "instantid-bare@1"}, models)
    with pytest.raises(ModelUnavailable, match=r"quantizes the UNet.*quantize=controlnet"):
        run(portrait_photo, {"model": "instantid-unet8@1"}, models)


def test_the_int8_variant_quantizes_identitynet_and_keeps_the_face_adapter(
    portrait_photo: Image.Image, tiny_models: Any
) -> None:
    models = ResidentModels(
        tiny_models.store, "a10", "cpu", budget_gb=8.0, preferred={"final": ["int8"]}
    )
    try:
        out = run(portrait_photo, {"min_identity": 0}, models, seed=2)
        assert out.info["variant"] == "int8" and out.size == (96, 64)
        pipe = models.get("instantid-sdxl").pipe
        assert pipe.unet.encoder_hid_proj is not None, "the adapter is loaded"
        quantized = type(pipe.controlnet.time_embedding.linear_1.weight).__name__
        plain = type(pipe.unet.time_embedding.linear_1.weight).__name__
        assert quantized != "Parameter" and plain == "Parameter", (quantized, plain)
    finally:
        models.clear()
