"""`identity_portrait`: a loaded InstantID model, and the op that runs it.

The op finds every face first (CPU, YuNet), so a job whose photo shows no face fails
with `face_not_found` before the worker loads (or evicts) any model. The model is a
published InstantID folder (see `layout.py`): loading it loads the diffusers pipeline
through the variant table, then the face adapter with diffusers' `load_ip_adapter`,
then the ArcFace encoder its manifest links as `face_encoder`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from PIL import Image

from jobs.errors import InputInvalid, ModelUnavailable
from jobs.ops.identity import IdentityPortraitParams
from model_store.cache import LocalModel
from model_store.manifest import Variant
from pipelines.base import OpContext
from pipelines.faces import ArcFaceEncoder
from pipelines.generative.base import EditPipeline
from pipelines.generative.denoise import job_seed
from pipelines.generative.sizing import SizePlan, lane_side, lane_steps
from pipelines.identity.diffusion import StableDiffusionXLInstantIDPipeline
from pipelines.identity.gate import IdentityMatcher, attempt_seeds, gated_render
from pipelines.identity.keypoints import draw_keypoints, map_keypoints
from pipelines.identity.layout import FACE_ENCODER, IP_ADAPTER_FILE, IP_ADAPTER_FOLDER
from pipelines.identity.subject import Subject, average_embeddings, find_subject
from pipelines.portrait.nets import face_analyzer


class _LinkedFiles:
    """`ModelFiles` for the one component a manifest links (already pulled)."""

    def __init__(self, local: LocalModel) -> None:
        self.local = local

    def local_path(self, ref: str) -> Path:
        return self.local.path


def load_face_encoder(local: LocalModel, components: Mapping[str, LocalModel]) -> ArcFaceEncoder:
    """The ArcFace-family encoder `local`'s manifest links: its adapter's embedding space."""
    linked = components.get(FACE_ENCODER)
    if linked is None:
        raise ModelUnavailable(
            f"model {local.manifest.ref} links no face encoder: publish it with "
            f"`--component {FACE_ENCODER}=arcface-antelopev2@1` (the ArcFace ONNX its "
            "face adapter was trained on)"
        )
    with linked.in_use():
        return ArcFaceEncoder.from_store(_LinkedFiles(linked), linked.manifest.ref)


def load_face_adapter(pipe: StableDiffusionXLInstantIDPipeline, path: Path, ref: str) -> None:
    """InstantID's face adapter (Resampler + decoupled cross-attention) into the UNet."""
    if not (path / IP_ADAPTER_FOLDER / IP_ADAPTER_FILE).is_file():
        raise ModelUnavailable(
            f"model {ref} has no face adapter at {IP_ADAPTER_FOLDER}/{IP_ADAPTER_FILE}: "
            "publish InstantID's ip-adapter weights there, converted to safetensors"
        )
    try:
        pipe.load_ip_adapter(
            str(path / IP_ADAPTER_FOLDER),
            subfolder="",
            weight_name=IP_ADAPTER_FILE,
            image_encoder_folder=None,  # InstantID embeds faces with ArcFace, not CLIP
            local_files_only=True,
        )
    except ValueError as exc:
        if "quantized" not in str(exc):
            raise
        # diffusers casts the UNet after adding the adapter, which a quantized one refuses.
        raise ModelUnavailable(
            f"model {ref}: this variant quantizes the UNet, which cannot take the face "
            "adapter; publish a variant that quantizes only the IdentityNet "
            "(`quantize=controlnet`), or a bf16/fp16 one"
        ) from None


def portrait_plan(size: tuple[int, int], side: int, multiple: int) -> SizePlan:
    """The portrait at `size`'s aspect with its longest side `side`: a generation, so a
    small photo still gives a full-size portrait; the model works on its latent grid."""
    width, height = size
    scale = side / max(width, height)
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    work = tuple(max(multiple, round(v / multiple) * multiple) for v in out)
    return SizePlan(work=(work[0], work[1]), out=out)


class IdentityPortrait(EditPipeline):
    """One loaded InstantID variant, with its face encoder; `portrait` renders a subject."""

    diffusers_class: ClassVar[type[Any]] = StableDiffusionXLInstantIDPipeline

    def __init__(self, pipe: Any, variant: Variant, **kwargs: Any) -> None:
        super().__init__(pipe, variant, **kwargs)
        self.encoder: ArcFaceEncoder | None = None
        self._encoder_lock = threading.Lock()  # OpenCV nets keep per-call state

    @classmethod
    def from_local(
        cls,
        local: LocalModel,
        variant: Variant,
        device: str | torch.device,
        components: Mapping[str, LocalModel] | None = None,
    ) -> Self:
        """Load `variant` of the InstantID model `local`, its adapter and face encoder."""
        encoder = load_face_encoder(local, components or {})  # before the heavy part
        portrait = super().from_local(local, variant, device, components)
        with local.in_use():
            load_face_adapter(portrait.pipe, local.path, local.manifest.ref)
        portrait.encoder = encoder
        return portrait

    @property
    def multiple(self) -> int:
        """The VAE's 8x times the UNet's downsamplings: SDXL works on 32 px steps."""
        levels = len(self.pipe.unet.config.block_out_channels) - 1
        return int(self.pipe.vae_scale_factor) * 2**levels

    def __call__(
        self, image: Image.Image, params: IdentityPortraitParams, ctx: OpContext
    ) -> Image.Image:
        subject = find_subject(image, ctx.extra_inputs, params, face_analyzer(ctx.preview))
        return self.portrait(subject, params, ctx)

    def face_embedding(self, subject: Subject) -> torch.Tensor:
        """The generator's view of the face: ArcFace embeddings of the references, averaged."""
        if self.encoder is None:
            raise ModelUnavailable(f"model {self.ref} was loaded without its face encoder")
        with self._encoder_lock:
            vectors = [self.encoder.embed(ref.image, ref.face) for ref in subject.references]
        return torch.from_numpy(average_embeddings(vectors))

    def prepare(
        self, subject: Subject, params: IdentityPortraitParams, ctx: OpContext
    ) -> tuple[SizePlan, dict[str, Any]]:
        """The portrait's sizes and the pipeline's inputs: the face to keep (ArcFace,
        averaged over the references) and the pose photo's keypoints on the canvas."""
        pose = subject.pose
        plan = portrait_plan(pose.image.size, lane_side(params, ctx), self.multiple)
        control = draw_keypoints(plan.work, map_keypoints(pose.face, pose.image.size, plan.work))
        inputs = {
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt,
            "control_image": control,
            "face_embedding": self.face_embedding(subject),
            "identity_scale": params.identity_strength,
            "control_scale": params.control_strength,
            "guidance_scale": params.guidance,
            "height": plan.work[1],
            "width": plan.work[0],
        }
        return plan, inputs

    def portrait(
        self, subject: Subject, params: IdentityPortraitParams, ctx: OpContext
    ) -> Image.Image:
        """The portrait of `subject`: rendered, identity-checked, re-rendered if needed."""
        # 1. the face to keep and the pose to draw
        plan, inputs = self.prepare(subject, params, ctx)
        ctx.info.update(references=len(subject.references), pose=params.pose)

        # 2. a preview is a draft: one render, no identity check
        if ctx.preview:
            ctx.info["identity_checked"] = False
            return self.render(ctx, plan, lane_steps(params, ctx), **inputs)

        # 3. renders with new seeds until one passes the identity gate
        seeds = attempt_seeds(job_seed(ctx), params.max_rerenders + 1)

        # one person, however many photos of them: the best-matching face in the render
        matcher = IdentityMatcher(face_analyzer(), [subject.sface_embeddings()])

        def render_once(attempt: OpContext) -> Image.Image:
            return self.render(attempt, plan, lane_steps(params, ctx), **inputs)

        return gated_render(ctx, render_once, matcher, seeds, params)


def identity_portrait(image: Image.Image, params: Any, ctx: OpContext) -> Image.Image:
    """The `identity_portrait` op: check and find every face, then render the portrait."""
    if not isinstance(params, IdentityPortraitParams):
        raise TypeError(f"identity_portrait got {type(params).__name__}")
    # 1. every image checked, every face found: bad input fails before any model loads
    subject = find_subject(image, ctx.extra_inputs, params, face_analyzer(ctx.preview))

    # 2. the resident InstantID model
    if ctx.models is None:
        raise ModelUnavailable("identity_portrait needs a worker with a model cache (a GPU tier)")
    pipeline = ctx.models.get(params.model, ctx.lane)
    if not isinstance(pipeline, IdentityPortrait):
        kind = type(getattr(pipeline, "pipe", pipeline)).__name__
        raise InputInvalid(
            f"model {params.model} is a {kind}; identity_portrait runs "
            f"{StableDiffusionXLInstantIDPipeline.__name__} models"
        )

    # 3. the portrait, identity-checked
    return pipeline.portrait(subject, params, ctx)
