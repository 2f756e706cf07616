"""Builders shared by the model store tests: diffusers-shaped folders of random bytes.

No torch: a `.safetensors` file is a little-endian u64 header length, a JSON header
listing each tensor's dtype, shape and byte range, then the raw bytes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from jobs.settings import Settings
from model_store import ModelStore


def write_safetensors(path: Path, tensors: dict[str, list[int]]) -> int:
    """A valid fp32 safetensors file of random values; returns its parameter count."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [offset, offset + 4 * count],
        }
        offset += 4 * count
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.write(os.urandom(offset))
    return offset // 4


def make_diffusers_folder(root: Path, unet_side: int = 64) -> Path:
    """model_index.json plus unet / vae / text_encoder / tokenizer subfolders."""
    root.mkdir(parents=True, exist_ok=True)
    index = {
        "_class_name": "StableDiffusionInstructPix2PixPipeline",
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    }
    (root / "model_index.json").write_text(json.dumps(index))
    for part in ("unet", "vae", "text_encoder"):
        (root / part).mkdir(exist_ok=True)
        (root / part / "config.json").write_text(json.dumps({"_class_name": part}))
    write_safetensors(
        root / "unet" / "diffusion_pytorch_model.safetensors",
        {"conv.weight": [unet_side, unet_side], "conv.bias": [unet_side]},
    )
    write_safetensors(root / "vae" / "diffusion_pytorch_model.safetensors", {"w": [16, 16]})
    write_safetensors(root / "text_encoder" / "model.safetensors", {"emb": [32, 8]})
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    (root / ".cache").mkdir(exist_ok=True)
    (root / ".cache" / "ignored.lock").write_text("hub bookkeeping, never published")
    return root


def local_settings(tmp: Path, cache_max_gb: float = 100.0) -> Settings:
    return Settings(
        home=tmp / "home",
        model_store=str(tmp / "store"),
        model_cache=tmp / "cache",
        model_cache_max_gb=cache_max_gb,
    )


def local_store(tmp: Path, cache_max_gb: float = 100.0) -> ModelStore:
    return ModelStore.from_settings(local_settings(tmp, cache_max_gb))
