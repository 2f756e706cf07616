"""`multi_identity`: a loaded UNO (+ UMO) model, and the op that runs it.

The op finds every reference's face first (CPU, YuNet), so a job with a faceless
photo fails with `face_not_found` before the worker loads (or evicts) any model. The
model is a published FLUX.1-dev folder in diffusers layout whose manifest names
`FluxUNOPipeline`; loading it loads the pipeline through the variant table, then the
LoRA adapters its manifest links (`adapters.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import torch
from PIL import Image

from jobs.errors import InputInvalid, ModelUnavailable
from jobs.ops.multi_identity import MultiIdentityParams
from model_store.cache import LocalModel
from model_store.manifest import Variant
from pipelines.base import OpContext
from pipelines.generative.base import EditPipeline, FluxLatents
from pipelines.generative.denoise import job_seed
from pipelines.generative.sizing import SizePlan, lane_side, lane_steps
from pipelines.identity.gate import IdentityMatcher, attempt_seeds, gated_render
from pipelines.multi_identity.adapters import load_adapters
from pipelines.multi_identity.diffusion import FluxUNOPipeline
from pipelines.multi_identity.people import Person, align_face, find_people, reference_side
from pipelines.portrait.nets import face_analyzer


def image_plan(aspect: float, side: int, multiple: int) -> SizePlan:
    """The image at `aspect` (width / height) with its longest side `side`, worked on
    the latent grid and resized back to exactly that aspect."""
    width, height = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    out = (max(1, round(width)), max(1, round(height)))
    work = tuple(max(multiple, round(v / multiple) * multiple) for v in out)
    return SizePlan(work=(work[0], work[1]), out=out)


class MultiIdentity(FluxLatents, EditPipeline):
    """One loaded UNO variant with its LoRA adapters; `generate` renders the people."""

    diffusers_class: ClassVar[type[Any]] = FluxUNOPipeline

    def __init__(self, pipe: Any, variant: Variant, **kwargs: Any) -> None:
        super().__init__(pipe, variant, **kwargs)
        self.adapters: list[str] = []

    @classmethod
    def from_local(
        cls,
        local: LocalModel,
        variant: Variant,
        device: str | torch.device,
        components: Mapping[str, LocalModel] | None = None,
    ) -> Self:
        """Load `variant` of the UNO model `local`, then the LoRA adapters it links."""
        model = super().from_local(local, variant, device, components)
        model.adapters = load_adapters(model.pipe, components or {})
        return model

    def __call__(
        self, image: Image.Image, params: MultiIdentityParams, ctx: OpContext
    ) -> Image.Image:
        people = find_people(image, ctx.extra_inputs, face_analyzer(ctx.preview))
        return self.generate(people, params, ctx)

    def prepare(
        self, people: Sequence[Person], params: MultiIdentityParams, ctx: OpContext
    ) -> tuple[SizePlan, dict[str, Any]]:
        """The image's sizes and the pipeline's inputs: one aligned face per person."""
        side = lane_side(params, ctx)
        plan = image_plan(params.aspect(), side, self.multiple)
        crop = reference_side(
            params.reference_side, len(people), self.multiple, side / params.max_side
        )
        inputs = {
            "prompt": params.prompt,
            "references": [align_face(p.photo, p.face, crop) for p in people],
            "guidance_scale": params.guidance,
            "height": plan.work[1],
            "width": plan.work[0],
            "joint_attention_kwargs": {"scale": params.lora_scale} if self.adapters else None,
        }
        return plan, inputs

    def generate(
        self, people: Sequence[Person], params: MultiIdentityParams, ctx: OpContext
    ) -> Image.Image:
        """The image of `people`: rendered, identity-checked face by face, re-rendered
        with new seeds until every person has their own face (or attempts run out)."""
        # 1. the references, aligned, and the sizes
        plan, inputs = self.prepare(people, params, ctx)
        ctx.info.update(
            people=len(people),
            reference_side=inputs["references"][0].width,
            adapters=list(self.adapters),
        )

        # 2. a preview is a draft: one render, no identity check
        if ctx.preview:
            ctx.info["identity_checked"] = False
            return self.render(ctx, plan, lane_steps(params, ctx), **inputs)

        # 3. renders with new seeds until one passes the multi-face gate
        seeds = attempt_seeds(job_seed(ctx), params.max_rerenders + 1)
        matcher = IdentityMatcher(face_analyzer(), [[p.embedding] for p in people])

        def render_once(attempt: OpContext) -> Image.Image:
            return self.render(attempt, plan, lane_steps(params, ctx), **inputs)

        return gated_render(ctx, render_once, matcher, seeds, params, [p.label for p in people])


def multi_identity(image: Image.Image, params: Any, ctx: OpContext) -> Image.Image:
    """The `multi_identity` op: find every reference's face, then render and check."""
    if not isinstance(params, MultiIdentityParams):
        raise TypeError(f"multi_identity got {type(params).__name__}")
    # 1. every photo checked, every face found: bad input fails before any model loads
    people = find_people(image, ctx.extra_inputs, face_analyzer(ctx.preview))

    # 2. the resident UNO model
    if ctx.models is None:
        raise ModelUnavailable("multi_identity needs a worker with a model cache (a GPU tier)")
    pipeline = ctx.models.get(params.model, ctx.lane)
    if not isinstance(pipeline, MultiIdentity):
        kind = type(getattr(pipeline, "pipe", pipeline)).__name__
        raise InputInvalid(
            f"model {params.model} is a {kind}; multi_identity runs "
            f"{FluxUNOPipeline.__name__} models"
        )

    # 3. the image, every face identity-checked
    return pipeline.generate(people, params, ctx)
