"""What every generative edit pipeline shares: loading from the store, and the render.

A pipeline object holds one model variant, loaded once per worker process: the
diffusers pipeline (built by `variants.load_pipeline`) and, when the model's manifest
links one as `components["tiny_decoder"]`, a TAESD-class decoder for previews.
Subclasses write `__call__` as a numbered recipe and hand steps 3-4 to `render`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar, Self

import torch
from diffusers import AutoencoderTiny
from PIL import Image

from jobs.errors import JobCanceled
from model_store.cache import LocalModel
from model_store.manifest import Variant
from pipelines.base import OpContext
from pipelines.generative.batch import BatchStepHook, EditJob, batch_key, call_inputs
from pipelines.generative.denoise import StepHook, gpu_memory_guard, job_seed
from pipelines.generative.sizing import SizePlan, check_image, fit
from pipelines.generative.variants import load_pipeline

TINY_DECODER = "tiny_decoder"


class EditPipeline:
    """One loaded variant of an edit model; call it with an image, params and a context."""

    diffusers_class: ClassVar[type[Any]]
    """The diffusers pipeline class this one loads (its name is the manifest's pipeline_class)."""
    takes_tiny_decoder: ClassVar[bool] = True
    """False where no TAESD-class decoder fits the model's latents (Qwen's are 3-D)."""
    batchable: ClassVar[bool] = False
    """True where one diffusers call renders lists of prompts and images as a batch, one
    image per prompt (`pipelines.generative.batch`): previews may then be micro-batched.
    False where a list means something else (several reference images of one edit)."""

    def __init__(
        self,
        pipe: Any,
        variant: Variant,
        *,
        tiny_decoder: Any = None,
        ref: str = "",
    ) -> None:
        self.pipe = pipe  # a diffusers pipeline; typed Any as diffusers' attributes are dynamic
        self.variant = variant
        self.tiny_decoder = tiny_decoder
        self.ref = ref or type(pipe).__name__

    @classmethod
    def from_local(
        cls,
        local: LocalModel,
        variant: Variant,
        device: str | torch.device,
        components: Mapping[str, LocalModel] | None = None,
    ) -> Self:
        """Load `variant` of the model copy `local` onto `device`, with linked components."""
        device = torch.device(device)
        with local.in_use():
            pipe = load_pipeline(cls.diffusers_class, local.path, variant, device)
        decoder = (components or {}).get(TINY_DECODER) if cls.takes_tiny_decoder else None
        tiny = _load_tiny_decoder(decoder, pipe, device) if decoder else None
        return cls(pipe, variant, tiny_decoder=tiny, ref=local.manifest.ref)

    @classmethod
    def check_inputs(cls, image: Image.Image, params: Any, ctx: OpContext) -> None:
        """Refuse bad input before any model work; the op calls it before loading the model."""
        check_image(image)

    def __call__(self, image: Image.Image, params: Any, ctx: OpContext) -> Image.Image:
        """Run the edit; each subclass writes it as a numbered recipe."""
        raise NotImplementedError

    @property
    def multiple(self) -> int:
        """Working sizes are multiples of this: the latent grid times the patch size."""
        return int(self.pipe.vae_scale_factor) * 2

    def render(self, ctx: OpContext, plan: SizePlan, steps: int, **inputs: Any) -> Image.Image:
        """Steps 3-4 of every edit: seeded denoising that reports progress and stops when
        the job is canceled, then decoding (the tiny decoder for a preview, if linked).

        A preview joins the context's micro-batcher where the class is `batchable`:
        previews of this pipeline with the same size, steps and scalar arguments that
        arrive within its window run as one call; each gets its own image back, noised
        from its own seed, and `batch_size` in its info.

        Raises:
            jobs.errors.JobCanceled: the job was canceled between two denoising steps.
            jobs.errors.OutOfMemory: the render (or its batch) ran out of GPU memory.
        """
        job = EditJob(ctx, plan, job_seed(ctx), inputs)
        tiny = ctx.preview and self.tiny_decoder is not None
        key = batch_key(self, job, steps, tiny) if ctx.preview and self.batchable else None
        if ctx.batcher is None or key is None:
            (outcome,) = self._render_jobs([job], steps)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return ctx.batcher.submit(key, job, partial(self._render_jobs, steps=steps))

    def _render_jobs(self, jobs: list[EditJob], steps: int) -> list[Image.Image | JobCanceled]:
        """One diffusers call for `jobs` (alike but for their batched inputs and seeds)."""
        ctx, plan, batched = jobs[0].ctx, jobs[0].plan, len(jobs) > 1
        tiny = self.tiny_decoder if ctx.preview else None
        pipe = call_view(self.pipe)
        hook = BatchStepHook([job.ctx for job in jobs], steps) if batched else StepHook(ctx, steps)
        what = f"{self.ref} at {plan.work[0]}x{plan.work[1]}"
        with gpu_memory_guard(what + (f", a batch of {len(jobs)}" if batched else "")):
            result = pipe(
                **call_inputs(jobs),
                num_inference_steps=steps,
                callback_on_step_end=hook,
                output_type="latent" if tiny is not None else "pil",
            )
            images = result.images if tiny is None else self._decode_tiny(tiny, result, plan)
        outcomes: list[Image.Image | JobCanceled] = []
        for job, image in zip(jobs, images, strict=True):
            job.ctx.info.update(
                model=self.ref,
                variant=self.variant.name,
                steps=steps,
                work_size=list(plan.work),
                decoder="tiny" if tiny is not None else "full",
            )
            if job.ctx.batcher is not None and self.batchable and job.ctx.preview:
                job.ctx.info["batch_size"] = len(jobs)
            canceled = BatchStepHook.canceled(job.ctx) if batched else None
            outcomes.append(canceled or fit(image, job.plan.out))
        return outcomes

    def _spatial_latents(self, latents: torch.Tensor, plan: SizePlan) -> torch.Tensor:
        """Latents as (batch, channels, h, w); FLUX pipelines unpack their token sequence."""
        return latents

    @torch.inference_mode()
    def _decode_tiny(self, tiny: Any, result: Any, plan: SizePlan) -> list[Image.Image]:
        """Every image of the batch in `result`, decoded by the tiny decoder."""
        latents = self._spatial_latents(result.images, plan).to(tiny.dtype)
        shift = getattr(tiny.config, "shift_factor", 0.0) or 0.0
        decoded = tiny.decode(latents / tiny.config.scaling_factor + shift, return_dict=False)[0]
        images: list[Image.Image] = self.pipe.image_processor.postprocess(
            decoded, output_type="pil"
        )
        return images


def call_view(pipe: Any) -> Any:
    """A view of diffusers pipeline `pipe` for one call: the same modules (no weights
    copied), its own scheduler and per-call attributes.

    diffusers pipelines keep a call's state on the object (the scheduler's timesteps and
    step index, `_guidance_scale`, `_num_timesteps`, ...). Two renders inside one
    pipeline at once (a preview run between two denoising steps of a final by
    `workers.steps`, or a threaded worker with two slots) would step each other's
    scheduler; each call on its own view cannot. diffusers' documented way to share
    components is a new pipeline over `pipe.components`; a shallow copy does the same and
    keeps what a variant set on the object (progress-bar config, offload hooks).
    """
    view = copy.copy(pipe)
    view.scheduler = copy.deepcopy(pipe.scheduler)
    return view


class FluxLatents:
    """Mixin for FLUX pipelines: their latents come back packed 2x2 into tokens."""

    pipe: Any

    def _spatial_latents(self, latents: torch.Tensor, plan: SizePlan) -> torch.Tensor:
        width, height = plan.work
        unpacked: torch.Tensor = self.pipe._unpack_latents(
            latents, height, width, self.pipe.vae_scale_factor
        )
        return unpacked


def _load_tiny_decoder(local: LocalModel, pipe: Any, device: torch.device) -> Any:
    with local.in_use():
        tiny = AutoencoderTiny.from_pretrained(local.path, dtype=pipe.vae.dtype)
    return tiny.to(device).eval()
