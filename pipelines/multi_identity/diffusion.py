"""UNO's denoising loop on diffusers' FLUX parts: references as extra latent tokens.

diffusers ships FLUX.1 Kontext, which reads one reference image as extra tokens; UNO
(Wu et al. 2025, arXiv:2504.02160) reads several, each at its own rotary offset
(`positions.uno_ids`). This subclass keeps Kontext's helpers (prompt encoding, VAE
encoding, packing, noise, timesteps, LoRA loading through `FluxLoraLoaderMixin`) and
replaces `__call__` with that loop: the target's noisy tokens and every reference's
clean tokens go through the transformer together, and only the target's part of the
prediction steps the scheduler, as in UNO's `denoise`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from diffusers.pipelines.flux.pipeline_flux_kontext import (
    FluxKontextPipeline,
    calculate_shift,
    retrieve_timesteps,
)
from diffusers.pipelines.flux.pipeline_output import FluxPipelineOutput
from PIL import Image

from pipelines.multi_identity.positions import Grid, uno_ids

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


class FluxUNOPipeline(FluxKontextPipeline):
    """FLUX.1-dev + UNO: an image of `prompt` showing what the `references` show."""

    @property
    def multiple(self) -> int:
        """Sizes are multiples of this: the VAE's 8x times FLUX's 2x2 packing."""
        return int(self.vae_scale_factor) * 2

    def reference_tokens(
        self, references: Sequence[Image.Image], dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, list[Grid]]:
        """(1, tokens, channels * 4) packed VAE latents of every reference, in order,
        and each reference's packed grid (rows, columns)."""
        packed, grids = [], []
        for reference in references:
            width, height = reference.size
            pixels = self.image_processor.preprocess(reference, height, width)
            pixels = pixels.to(device, self.vae.dtype)
            # the latent mode ("argmax"): no sampling, so no generator
            latents = self._encode_vae_image(pixels, generator=None)  # type: ignore[arg-type]
            _, channels, rows, columns = latents.shape
            packed.append(self._pack_latents(latents.to(dtype), 1, channels, rows, columns))
            grids.append((rows // 2, columns // 2))
        return torch.cat(packed, dim=1), grids

    def check_sizes(self, references: Sequence[Image.Image], height: int, width: int) -> None:
        """Raise ValueError unless the target and every reference lie on the latent grid."""
        if not references:
            raise ValueError("UNO needs at least one reference image")
        for what, (w, h) in [
            ("image", (width, height)),
            *(("reference", r.size) for r in references),
        ]:
            if w % self.multiple or h % self.multiple:
                raise ValueError(f"{what} size {w}x{h} is not a multiple of {self.multiple}")

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str,
        references: Sequence[Image.Image],
        *,
        height: int,
        width: int,
        num_inference_steps: int = 25,
        guidance_scale: float = 4.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback_on_step_end: StepCallback | None = None,
        joint_attention_kwargs: dict[str, Any] | None = None,
    ) -> FluxPipelineOutput:
        # 1. check inputs
        self.check_sizes(references, height, width)
        self._joint_attention_kwargs = dict(joint_attention_kwargs or {})
        self._guidance_scale = guidance_scale
        self._interrupt = False
        self._current_timestep = None
        device = self._execution_device

        # 2. encode the prompt (T5 tokens, pooled CLIP); LoRA scale reaches the encoders too
        text, pooled, text_ids = self.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            device=device,
            lora_scale=self._joint_attention_kwargs.get("scale"),
        )
        dtype = text.dtype

        # 3. the references as clean tokens, and every token's UnoPE position
        reference, grids = self.reference_tokens(references, dtype, device)
        channels = self.transformer.config.in_channels // 4
        latents, _, _, _ = self.prepare_latents(
            None, 1, channels, height, width, dtype, device, generator
        )
        target = (height // self.multiple, width // self.multiple)
        ids = uno_ids(target, grids).to(device, dtype)

        # 4. timesteps, shifted for the target's token count as FLUX.1-dev's schedule is
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps).tolist()
        config = self.scheduler.config
        mu = calculate_shift(
            latents.shape[1],
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        timesteps, _ = retrieve_timesteps(
            self.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu
        )
        self._num_timesteps = len(timesteps)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full([1], guidance_scale, device=device, dtype=torch.float32)

        # 5. denoising loop: target and references attend to each other; only the
        # target's tokens are denoised
        self.scheduler.set_begin_index(0)
        for step, t in enumerate(timesteps):
            self._current_timestep = t
            noise = self.transformer(
                hidden_states=torch.cat([latents, reference], dim=1),
                timestep=t.expand(1).to(dtype) / 1000,
                guidance=guidance,
                pooled_projections=pooled,
                encoder_hidden_states=text,
                txt_ids=text_ids,
                img_ids=ids,
                joint_attention_kwargs=self._joint_attention_kwargs,
                return_dict=False,
            )[0][:, : latents.shape[1]]
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                latents = callback_on_step_end(self, step, t, {"latents": latents}).get(
                    "latents", latents
                )
        self._current_timestep = None

        # 6. decode
        if output_type == "latent":
            return FluxPipelineOutput(images=latents)
        spatial = self._unpack_latents(latents, height, width, self.vae_scale_factor)
        spatial = spatial / self.vae.config.scaling_factor + self.vae.config.shift_factor
        decoded = self.vae.decode(spatial.to(self.vae.dtype), return_dict=False)[0]
        return FluxPipelineOutput(
            images=self.image_processor.postprocess(decoded, output_type=output_type)
        )
