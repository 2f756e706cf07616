"""Tiny random-weight UNO parts, built offline for tests, demos and benches.

`uno()` is a saveable `FluxUNOPipeline` on the tiny FLUX parts every FLUX test model
uses. `uno_lora()` is a LoRA adapter for its transformer in the key layout UNO and UMO
publish theirs in (XLabs: fused q/k/v, `double_blocks.N.processor.qkv_lora1.down.weight`
...), so loading it goes through diffusers' conversion exactly as the real files do.
`pipelines.generative.tiny` lists both among its builders.

The adapter's up-projections are random, not zero as a fresh LoRA's are: with zeros it
would change nothing, and tests could not see it act.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from safetensors.torch import save_file

from pipelines.generative import tiny_parts as parts
from pipelines.multi_identity.diffusion import FluxUNOPipeline

LORA_RANK = 4
LORA_STD = 0.2
LORA_FILE = "lora.safetensors"
LORA_CLASS = "FluxLoRA"
"""`pipeline_class` of a published adapter (it has no diffusers class of its own)."""


def uno() -> FluxUNOPipeline:
    clip, t5 = parts.clip_tokenizer(), parts.t5_tokenizer()
    components: dict[str, Any] = {  # Any: diffusers' top-level names type as dummies
        "transformer": parts.flux_transformer(parts.FLUX_LATENT_CHANNELS * 4),
        "vae": parts.flux_vae(),
        "tokenizer": clip,
        "text_encoder": parts.clip_text_encoder(len(clip)),
        "tokenizer_2": t5,
        "text_encoder_2": parts.t5_encoder(len(t5)),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }
    return FluxUNOPipeline(**components)


def _pair(
    generator: torch.Generator, in_features: int, out_features: int
) -> dict[str, torch.Tensor]:
    """One UNO `LoRALinearLayer`: `down` (rank, in) and `up` (out, rank)."""
    return {
        "down.weight": torch.randn(LORA_RANK, in_features, generator=generator) * LORA_STD,
        "up.weight": torch.randn(out_features, LORA_RANK, generator=generator) * LORA_STD,
    }


def uno_lora_state(transformer: Any) -> dict[str, torch.Tensor]:
    """A random adapter for `transformer` in UNO's published layout: per double block,
    image-stream (`1`) and text-stream (`2`) q/k/v and output LoRAs; per single block,
    q/k/v and the output LoRA over the concatenated attention + MLP features."""
    generator = torch.Generator().manual_seed(parts.SEED)
    config = transformer.config
    dim = config.num_attention_heads * config.attention_head_dim
    single_in = dim + 4 * dim  # FLUX single blocks: attention + MLP (ratio 4) into proj_out
    layers: dict[str, tuple[int, int]] = {}
    for block in range(config.num_layers):
        for stream in ("1", "2"):
            layers[f"double_blocks.{block}.processor.qkv_lora{stream}"] = (dim, 3 * dim)
            layers[f"double_blocks.{block}.processor.proj_lora{stream}"] = (dim, dim)
    for block in range(config.num_single_layers):
        layers[f"single_blocks.{block}.processor.qkv_lora"] = (dim, 3 * dim)
        layers[f"single_blocks.{block}.processor.proj_lora"] = (single_in, dim)
    state: dict[str, torch.Tensor] = {}
    for prefix, (in_features, out_features) in layers.items():
        for key, tensor in _pair(generator, in_features, out_features).items():
            state[f"{prefix}.{key}"] = tensor.contiguous()
    return state


class TinyLoRA:
    """A saveable adapter folder: one safetensors file and a config naming its class."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.state, str(folder / LORA_FILE))
        config = {
            "_class_name": LORA_CLASS,
            "layout": "UNO / XLabs (double_blocks.N.processor.qkv_lora1 ...)",
            "rank": LORA_RANK,
            "weights": "random (tiny stand-in for UNO's dit_lora / UMO's UMO_UNO)",
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def uno_lora() -> TinyLoRA:
    return TinyLoRA(uno_lora_state(parts.flux_transformer(parts.FLUX_LATENT_CHANNELS * 4)))
