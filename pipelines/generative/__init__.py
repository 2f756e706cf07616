"""Generative edits on diffusers: FLUX.1 Kontext, Qwen-Image-Edit (+Plus), InstructPix2Pix,
SD inpainting and FLUX.1 Fill.

`OPS` maps op names to callables `(image, params, ctx) -> image`. Each checks its
inputs first (a bad job fails before any model loads), then asks the worker's
resident cache (`ctx.models.get(params.model, ctx.lane)`) for the loaded pipeline.
`PIPELINES` maps a manifest's `pipeline_class` to the class that loads and runs it;
`load_model` is how the resident cache builds one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
from PIL import Image

from jobs.errors import InputInvalid, ModelUnavailable
from jobs.ops.base import Params
from jobs.ops.generative import GenerativeParams
from model_store.cache import LocalModel
from model_store.manifest import Variant
from pipelines.base import Op, OpContext
from pipelines.generative.base import EditPipeline
from pipelines.generative.inpaint import FluxFill, StableDiffusionInpaint
from pipelines.generative.ip2p import InstructPix2PixEdit
from pipelines.generative.kontext import KontextEdit
from pipelines.generative.qwen import QwenEdit, QwenEditPlus

PIPELINES: dict[str, type[EditPipeline]] = {
    cls.diffusers_class.__name__: cls
    for cls in (
        KontextEdit,
        QwenEdit,
        QwenEditPlus,
        InstructPix2PixEdit,
        StableDiffusionInpaint,
        FluxFill,
    )
}

# Pipeline classes of other families, by the module that defines them: they build on
# this package, so they are imported when a model of theirs first loads, not here.
FAMILY_PIPELINES: dict[str, tuple[str, str]] = {
    "StableDiffusionXLInstantIDPipeline": ("pipelines.identity.portrait", "IdentityPortrait"),
    "FluxUNOPipeline": ("pipelines.multi_identity.model", "MultiIdentity"),
    "UpscalePipeline": ("pipelines.upscale.pipeline", "UpscalePipeline"),
}


def pipeline_class(name: str) -> type[EditPipeline]:
    """The class that loads and runs models whose manifest names `name`."""
    if name in FAMILY_PIPELINES:
        module, attribute = FAMILY_PIPELINES[name]
        return cast(type[EditPipeline], getattr(importlib.import_module(module), attribute))
    return PIPELINES[name]


def load_model(
    local: LocalModel,
    variant: Variant,
    device: str | torch.device,
    components: Mapping[str, LocalModel] | None = None,
) -> EditPipeline:
    """Load one variant of a published edit model with the class its manifest names."""
    name = local.manifest.pipeline_class
    try:
        cls = pipeline_class(name)
    except KeyError:
        known = sorted([*PIPELINES, *FAMILY_PIPELINES])
        raise ModelUnavailable(
            f"model {local.manifest.ref} is a {name}, which no generative op runs; "
            f"known: {', '.join(known)}"
        ) from None
    return cls.from_local(local, variant, device, components)


@dataclass(frozen=True)
class GenerativeOp:
    """One op: the pipeline classes that serve it; the first one's checks run first."""

    name: str
    serves: tuple[type[EditPipeline], ...]

    def __call__(self, image: Image.Image, params: Params, ctx: OpContext) -> Image.Image:
        # Inputs first: a bad job fails before the worker loads (or evicts) any model.
        self.serves[0].check_inputs(image, params, ctx)
        if ctx.models is None:
            raise ModelUnavailable(f"{self.name} needs a worker with a model cache (a GPU tier)")
        if not isinstance(params, GenerativeParams):
            raise TypeError(f"{self.name} got {type(params).__name__}, not generative params")
        pipeline = ctx.models.get(params.model, ctx.lane)
        if not isinstance(pipeline, self.serves):
            runs = ", ".join(cls.diffusers_class.__name__ for cls in self.serves)
            kind = type(getattr(pipeline, "pipe", pipeline)).__name__
            raise InputInvalid(f"model {params.model} is a {kind}; {self.name} runs {runs}")
        result: Image.Image = pipeline(image, params, ctx)
        return result


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        GenerativeOp("kontext_edit", (KontextEdit,)),
        GenerativeOp("qwen_edit", (QwenEditPlus, QwenEdit)),
        GenerativeOp("ip2p_edit", (InstructPix2PixEdit,)),
        GenerativeOp("inpaint", (StableDiffusionInpaint, FluxFill)),
    )
}

__all__ = [
    "FAMILY_PIPELINES",
    "OPS",
    "PIPELINES",
    "EditPipeline",
    "GenerativeOp",
    "load_model",
    "pipeline_class",
]
