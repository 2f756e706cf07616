"""Tiny random-weight components of the real model classes, built offline.

Each builder seeds torch first, so the same call always gives the same weights (and
the same bytes when saved). Shapes follow the real models where the pipelines
depend on them: FLUX's 16 latent channels packed 2x2, VAEs that downsample 8x,
Qwen's vision-language encoder with its special tokens, SD's 8- and 9-channel
UNets; everything else is as small as the classes allow. Tokenizers are built from
in-memory vocabularies: no hub is ever reached.
"""

from __future__ import annotations

import string
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLQwenImage,
    AutoencoderTiny,
    FluxTransformer2DModel,
    QwenImageTransformer2DModel,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from pipelines.generative.compat import fix_qwen2vl_processor

SEED = 0
TEXT_DIM = 32
FLUX_LATENT_CHANNELS = 16
SD_LATENT_CHANNELS = 4
QWEN_LATENT_CHANNELS = 4
# What the tiny FLUX VAE normalises latents with (FLUX.1's own values).
FLUX_SCALING, FLUX_SHIFT = 0.3611, 0.1159
SD_SCALING = 0.18215
CHARS = string.ascii_lowercase + string.digits + ".,!?'-:;()"
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def seeded() -> None:
    torch.manual_seed(SEED)


# -- tokenizers ----------------------------------------------------------------------


def clip_tokenizer() -> CLIPTokenizer:
    """Character-level CLIP BPE: each character, word-final or not, is one token."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in CHARS:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer() -> T5Tokenizer:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in CHARS] + [("\u2581" + c, -2.5) for c in CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE (GPT-2, Qwen) spells bytes with."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = (256 + i for i in range(256))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def qwen_tokenizer() -> Qwen2Tokenizer:
    """Byte-level, one token per byte, plus the chat and vision special tokens."""
    vocab = {char: i for i, char in enumerate(_byte_alphabet())}
    for token in QWEN_SPECIALS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIALS[1:])})
    return tokenizer


# -- text encoders -------------------------------------------------------------------


def clip_text_encoder(vocab_size: int) -> CLIPTextModel:
    seeded()
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=TEXT_DIM,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def t5_encoder(vocab_size: int) -> T5EncoderModel:
    seeded()
    # transformers' configs take their fields as **kwargs: a dict keeps mypy out of it.
    fields: dict[str, Any] = {
        "vocab_size": vocab_size,
        "d_model": TEXT_DIM,
        "d_ff": 37,
        "d_kv": 8,
        "num_layers": 2,
        "num_heads": 4,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }
    return T5EncoderModel(T5Config(**fields))


def qwen_vl_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    seeded()
    ids: dict[str, Any] = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
        "vocab_size": len(tokenizer),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": 16,
    }
    fields: dict[str, Any] = {
        "text_config": text,
        "vision_config": vision,
        "hidden_size": 16,
        "vocab_size": len(tokenizer),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|image_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
    }
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**fields))


def qwen_processor(tokenizer: Qwen2Tokenizer) -> Qwen2VLProcessor:
    fix_qwen2vl_processor()
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer)


# -- denoisers and autoencoders --------------------------------------------------------


def kl_vae(latent_channels: int, **scaling: Any) -> AutoencoderKL:
    """An 8x-downsampling KL autoencoder with 8 channels per block."""
    seeded()
    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        **scaling,
    )


def flux_vae() -> AutoencoderKL:
    return kl_vae(
        FLUX_LATENT_CHANNELS,
        scaling_factor=FLUX_SCALING,
        shift_factor=FLUX_SHIFT,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def sd_vae() -> AutoencoderKL:
    return kl_vae(SD_LATENT_CHANNELS, scaling_factor=SD_SCALING)


def flux_transformer(in_channels: int, out_channels: int | None = None) -> FluxTransformer2DModel:
    seeded()
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=TEXT_DIM,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )


def sd_unet(in_channels: int) -> UNet2DConditionModel:
    seeded()
    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=8,
        in_channels=in_channels,
        out_channels=SD_LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        norm_num_groups=8,
        attention_head_dim=8,
    )


def qwen_transformer() -> QwenImageTransformer2DModel:
    seeded()
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=QWEN_LATENT_CHANNELS * 4,
        out_channels=QWEN_LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )


def qwen_vae() -> AutoencoderKLQwenImage:
    seeded()
    z = QWEN_LATENT_CHANNELS
    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=z,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * z,
        latents_std=[1.0] * z,
    )


def tiny_autoencoder(latent_channels: int, **scaling: Any) -> AutoencoderTiny:
    """A TAESD-class autoencoder (8x) with one 8-channel block per level."""
    seeded()
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=latent_channels,
        **scaling,
    )
