"""Tiny random-weight InstantID parts, built offline for tests, demos and benches.

`instantid_sdxl()` is a saveable SDXL IdentityNet pipeline: SDXL-shaped UNet (text-time
conditioning, two text encoders), the IdentityNet `ControlNetModel`, a KL VAE and an
IP-Adapter weight file in InstantID's own key layout (Resampler `image_proj.*` and
`ip_adapter.<n>.to_k_ip/to_v_ip`), which `load_ip_adapter` converts on load exactly as
it converts the real file. `arcface()` is a stand-in for antelopev2's `glintr100.onnx`:
a real ONNX graph with the same interface (1x3x112x112 in, 512 floats out) and random
weights. `pipelines.generative.tiny` lists both among its builders.

ControlNet's zero-initialised convolutions are given small random weights here: with
zeros IdentityNet would add nothing, and tests could not see it steer the render.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from pipelines.generative import tiny_parts as parts
from pipelines.identity.diffusion import StableDiffusionXLInstantIDPipeline
from pipelines.identity.layout import (
    ARCFACE_CLASS,
    ARCFACE_FILE,
    EMBEDDING_DIM,
    IP_ADAPTER_FILE,
    IP_ADAPTER_FOLDER,
)

SDXL_SCALING = 0.13025
FACE_TOKENS = 16  # InstantID's Resampler queries
RESAMPLER_DEPTH = 4  # what diffusers' converter builds; the state dict must match
RESAMPLER_HIDDEN = 64  # one 64-wide head: the converter assumes heads of 64
TIME_EMBED_DIM = 8
CROSS_DIM = 2 * parts.TEXT_DIM  # SDXL concatenates both encoders' hidden states
ADD_EMBED_DIM = 6 * TIME_EMBED_DIM + parts.TEXT_DIM  # 6 size/crop ids + pooled text
ZERO_CONV_STD = 0.05

_SDXL_BLOCKS: dict[str, Any] = {
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "in_channels": parts.SD_LATENT_CHANNELS,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_EMBED_DIM,
    "transformer_layers_per_block": (1, 1),
    "projection_class_embeddings_input_dim": ADD_EMBED_DIM,
    "cross_attention_dim": CROSS_DIM,
    "norm_num_groups": 8,
}


def clip_text_encoder_with_projection(vocab_size: int) -> CLIPTextModelWithProjection:
    """SDXL's second text encoder: hidden states plus a pooled, projected embedding."""
    parts.seeded()
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=parts.TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=parts.TEXT_DIM,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModelWithProjection(config)


def sdxl_unet() -> UNet2DConditionModel:
    parts.seeded()
    return UNet2DConditionModel(
        **_SDXL_BLOCKS,
        sample_size=8,
        out_channels=parts.SD_LATENT_CHANNELS,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )


def identitynet() -> ControlNetModel:
    """The IdentityNet ControlNet; its conditioning embedding downsamples 8x, like the VAE."""
    parts.seeded()
    controlnet = ControlNetModel(**_SDXL_BLOCKS, conditioning_embedding_out_channels=(8, 8, 8, 16))
    zero_convs = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    with torch.no_grad():
        for conv in zero_convs:
            for weight in conv.parameters():
                weight.normal_(0.0, ZERO_CONV_STD)
    return controlnet


def sdxl_vae() -> Any:
    return parts.kl_vae(parts.SD_LATENT_CHANNELS, scaling_factor=SDXL_SCALING)


def sdxl_scheduler() -> Any:
    # Any: diffusers annotates a pipeline's scheduler with an Enum of scheduler names.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )


# -- the face adapter, in InstantID's key layout -----------------------------------------

# diffusers' Resampler names -> the names IP-Adapter's (and InstantID's) files use.
_RESAMPLER_NAMES = (
    (".ln0.", ".0.norm1."),
    (".ln1.", ".0.norm2."),
    (".attn.to_q.", ".0.to_q."),
    (".attn.to_out.0.", ".0.to_out."),
    (".ff.0.", ".1.0."),
    (".ff.1.net.0.proj.", ".1.1."),
    (".ff.1.net.2.", ".1.3."),
)


def resampler_state(cross_dim: int) -> dict[str, torch.Tensor]:
    """A random Resampler (512-d face embedding -> 16 tokens) in the original key layout."""
    parts.seeded()
    resampler = IPAdapterPlusImageProjection(
        embed_dims=EMBEDDING_DIM,
        output_dims=cross_dim,
        hidden_dims=RESAMPLER_HIDDEN,
        depth=RESAMPLER_DEPTH,
        heads=RESAMPLER_HIDDEN // 64,
        num_queries=FACE_TOKENS,
    )
    state = resampler.state_dict()
    original: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if ".attn.to_k." in name:
            value = state[name.replace(".to_k.", ".to_v.")]
            original[name.replace(".attn.to_k.", ".0.to_kv.")] = torch.cat([tensor, value])
            continue
        if ".attn.to_v." in name:
            continue
        for ours, theirs in _RESAMPLER_NAMES:
            name = name.replace(ours, theirs)
        original[name] = tensor
    return original


def ip_attention_state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """Random decoupled cross-attention weights, keyed as IP-Adapter numbers processors:
    every attention processor counts, and only cross-attention ones (odd) have weights."""
    generator = torch.Generator().manual_seed(parts.SEED)
    state: dict[str, torch.Tensor] = {}
    cross = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for number, name in enumerate(cross):
        to_k = unet.get_submodule(name.removesuffix(".processor")).to_k
        assert isinstance(to_k, torch.nn.Linear)
        shape = (to_k.out_features, CROSS_DIM)
        for kind in ("to_k_ip", "to_v_ip"):
            weight = torch.randn(shape, generator=generator) * 0.1
            state[f"{2 * number + 1}.{kind}.weight"] = weight
    return state


def ip_adapter_state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The whole adapter file: `image_proj.*` and `ip_adapter.*`, as InstantID ships it."""
    state = {f"image_proj.{k}": v for k, v in resampler_state(CROSS_DIM).items()}
    state.update({f"ip_adapter.{k}": v for k, v in ip_attention_state(unet).items()})
    return {k: v.contiguous() for k, v in state.items()}


class TinyInstantID:
    """A saveable tiny InstantID: the diffusers pipeline plus its adapter file."""

    def __init__(self, pipe: StableDiffusionXLInstantIDPipeline, adapter: dict[str, Any]) -> None:
        self.pipe = pipe
        self.adapter = adapter

    def save_pretrained(self, folder: Path) -> None:
        self.pipe.save_pretrained(folder)
        (folder / IP_ADAPTER_FOLDER).mkdir(parents=True, exist_ok=True)
        save_file(self.adapter, str(folder / IP_ADAPTER_FOLDER / IP_ADAPTER_FILE))


def instantid_sdxl() -> TinyInstantID:
    clip = parts.clip_tokenizer()
    unet = sdxl_unet()
    pipe = StableDiffusionXLInstantIDPipeline(
        vae=sdxl_vae(),
        text_encoder=parts.clip_text_encoder(len(clip)),
        text_encoder_2=clip_text_encoder_with_projection(len(clip)),
        tokenizer=clip,
        tokenizer_2=parts.clip_tokenizer(),
        unet=unet,
        controlnet=identitynet(),
        scheduler=sdxl_scheduler(),
        add_watermarker=False,
    )
    return TinyInstantID(pipe, ip_adapter_state(unet))


def taesdxl() -> Any:
    """TAESDXL's architecture (TAESD's, with SDXL's latents); random weights."""
    return parts.tiny_autoencoder(parts.SD_LATENT_CHANNELS)


# -- the face encoder stand-in -------------------------------------------------------------


class TinyArcFace:
    """An ONNX network with ArcFace's interface: BGR->RGB [-1, 1] 112x112 face in,
    512-d embedding out. Random weights: it embeds, it does not recognise anyone."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ARCFACE_FILE).write_bytes(self.model.SerializeToString())
        config = {
            "_class_name": ARCFACE_CLASS,
            "input": [1, 3, 112, 112],
            "embedding_dim": EMBEDDING_DIM,
            "weights": "random (tiny stand-in for antelopev2 glintr100.onnx)",
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def arcface() -> TinyArcFace:
    """Conv 16x16/16 -> ReLU -> Flatten -> Gemm(512): small, and a real ONNX graph."""
    # Imported here: only building the stand-in needs the onnx package.
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(parts.SEED)
    channels, grid = 8, 112 // 16
    conv = rng.normal(0, 0.05, (channels, 3, 16, 16)).astype(np.float32)
    dense = rng.normal(0, 0.05, (EMBEDDING_DIM, channels * grid * grid)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["input.1", "conv_w"], ["c"], kernel_shape=[16, 16], strides=[16, 16]
            ),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "dense_w"], ["embedding"], transB=1),
        ],
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, EMBEDDING_DIM])],
        initializer=[
            numpy_helper.from_array(conv, "conv_w"),
            numpy_helper.from_array(dense, "dense_w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what OpenCV's ONNX importer reads
    return TinyArcFace(model)
