"""The InstantID denoising loop on SDXL, written on diffusers' components.

diffusers ships no InstantID pipeline (only a community script, not in the wheel). Its
`StableDiffusionXLControlNetPipeline` feeds the ControlNet the *text* embeddings;
InstantID's IdentityNet is a ControlNet trained to take the *face tokens* instead: the
Resampler's projection of the ArcFace embedding. This subclass keeps the parent's
helpers (prompt encoding, control image, latents, size ids, decoding) and replaces
`__call__` with that loop. The same face embedding reaches the UNet through the
IP-Adapter's decoupled cross-attention (loaded with `load_ip_adapter`), scaled by
`identity_scale`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers.models.embeddings import MultiIPAdapterImageProjection
from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl import (
    StableDiffusionXLControlNetPipeline,
)
from diffusers.pipelines.stable_diffusion_xl.pipeline_output import (
    StableDiffusionXLPipelineOutput,
)
from PIL import Image

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


class StableDiffusionXLInstantIDPipeline(StableDiffusionXLControlNetPipeline):
    """SDXL + IdentityNet + face adapter: a portrait of the face `face_embedding` encodes,
    posed by `control_image` (its 5 keypoints drawn), styled by `prompt`."""

    def face_projection(self) -> MultiIPAdapterImageProjection:
        """The adapter's Resampler(s); raises if no face adapter was loaded."""
        projection = getattr(self.unet, "encoder_hid_proj", None)
        if not isinstance(projection, MultiIPAdapterImageProjection):
            raise ValueError("no face adapter loaded: call load_ip_adapter(...) first")
        return projection

    def face_embedding_dim(self) -> int:
        """The embedding size the adapter's Resampler takes (512 for ArcFace)."""
        proj_in = self.face_projection().image_projection_layers[0].proj_in
        if not isinstance(proj_in, torch.nn.Linear):
            raise ValueError("the face adapter is not a Resampler (IP-Adapter Plus) adapter")
        return int(proj_in.in_features)

    def face_embeds(self, face_embedding: torch.Tensor, guided: bool) -> torch.Tensor:
        """(batch, 1 image, 1 token, dim) embeddings; the unconditional half is zeros,
        as InstantID trains it."""
        embeds = face_embedding.reshape(1, 1, 1, -1).to(self.device, self.unet.dtype)
        return torch.cat([torch.zeros_like(embeds), embeds]) if guided else embeds

    def face_tokens(self, embeds: torch.Tensor) -> torch.Tensor:
        """The projected face tokens (batch, tokens, cross-attention dim) IdentityNet
        attends to: the Resampler output the UNet's adapter computes from `embeds`."""
        (tokens,) = self.face_projection()([embeds])
        return tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str,
        control_image: Image.Image,
        face_embedding: torch.Tensor,
        *,
        negative_prompt: str | None = None,
        identity_scale: float = 0.8,
        control_scale: float = 0.8,
        height: int,
        width: int,
        num_inference_steps: int = 30,
        guidance_scale: float = 5.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        callback_on_step_end: StepCallback | None = None,
    ) -> StableDiffusionXLPipelineOutput:
        # 1. check inputs
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if height % multiple or width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple}")
        dim = self.face_embedding_dim()
        if face_embedding.numel() != dim:
            raise ValueError(f"face embedding has {face_embedding.numel()} values, not {dim}")
        self._guidance_scale = guidance_scale
        self._clip_skip = None
        self._cross_attention_kwargs = None
        self._interrupt = False
        guided = self.do_classifier_free_guidance
        device = self._execution_device

        # 2. encode the prompt (SDXL: two encoders, pooled text for the size conditioning)
        text, negative_text, pooled, negative_pooled = self.encode_prompt(
            prompt, None, device, 1, guided, negative_prompt
        )
        if guided:
            text = torch.cat([negative_text, text])
            pooled = torch.cat([negative_pooled, pooled])

        # 3. the face: embeddings for the UNet's adapter, their tokens for IdentityNet
        self.set_ip_adapter_scale(identity_scale)
        embeds = self.face_embeds(face_embedding, guided)
        tokens = self.face_tokens(embeds).to(text.dtype)

        # 4. the keypoint image, timesteps, starting noise and SDXL's size ids
        control = self.prepare_image(
            control_image, width, height, 1, 1, device, self.controlnet.dtype, guided
        )
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        latents = self.prepare_latents(
            1, self.unet.config.in_channels, height, width, text.dtype, device, generator
        )
        projection_dim = int(pooled.shape[-1])
        time_ids = self._get_add_time_ids(
            (height, width), (0, 0), (height, width), text.dtype, projection_dim
        )
        added = {"text_embeds": pooled, "time_ids": time_ids.to(device).repeat(len(text), 1)}

        # 5. denoising loop: IdentityNet sees the face tokens, the UNet text + face
        for step, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            down, mid = self.controlnet(
                model_input,
                t,
                encoder_hidden_states=tokens,
                controlnet_cond=control,
                conditioning_scale=control_scale,
                added_cond_kwargs=added,
                return_dict=False,
            )
            noise = self.unet(
                model_input,
                t,
                encoder_hidden_states=text,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
                added_cond_kwargs={**added, "image_embeds": [embeds]},
                return_dict=False,
            )[0]
            if guided:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                latents = callback_on_step_end(self, step, t, {"latents": latents}).get(
                    "latents", latents
                )

        # 6. decode
        if output_type == "latent":
            return StableDiffusionXLPipelineOutput(images=latents)
        return StableDiffusionXLPipelineOutput(images=self._decode(latents, output_type))

    def _decode(self, latents: torch.Tensor, output_type: str) -> Any:
        # SDXL's VAE overflows in fp16: decode in fp32 when its config says so.
        upcast = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        vae_dtype = self.vae.dtype
        if upcast:
            self.vae.to(torch.float32)
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        decoded = self.vae.decode(latents, return_dict=False)[0]
        if upcast:
            self.vae.to(vae_dtype)
        return self.image_processor.postprocess(decoded, output_type=output_type)
