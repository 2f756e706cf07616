"""`UpscalePipeline`: one published super-resolution model, loaded as one variant.

Built from components (a runner and its network config); `from_local` loads it from
a model-store folder (`config.json` + `model.safetensors`, plus the variant's own files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model_store.cache import LocalModel
from model_store.manifest import Variant
from pipelines.upscale.arch import SRConfig
from pipelines.upscale.tiles import Runner, plan, upscale_tiled
from pipelines.upscale.variants import CONFIG, load_runner

PIPELINE_CLASS = "UpscalePipeline"


def read_config(folder: Path) -> SRConfig:
    raw = json.loads((folder / CONFIG).read_text())
    return SRConfig.from_json(raw["network"])


class UpscalePipeline:
    """A super-resolution network behind a runner (torch, onnxruntime or TensorRT)."""

    def __init__(self, runner: Runner, config: SRConfig, ref: str = "", variant: str = "") -> None:
        self.runner = runner
        self.config = config
        self.ref = ref
        self.variant = variant

    @property
    def scale(self) -> int:
        return self.config.scale

    @classmethod
    def from_folder(cls, folder: Path, variant: Variant, device: str = "cpu") -> UpscalePipeline:
        config = read_config(folder)
        return cls(load_runner(folder, variant, config, device), config, str(folder), variant.name)

    @classmethod
    def from_local(
        cls,
        local: LocalModel,
        variant: Variant,
        device: Any,
        components: Mapping[str, LocalModel] | None = None,
    ) -> UpscalePipeline:
        """How the worker's resident cache loads a published model (see `load_model`)."""
        pipeline = cls.from_folder(local.path, variant, str(device))
        pipeline.ref = local.manifest.ref
        return pipeline

    def upscale(
        self,
        rgb: np.ndarray,
        tile: int = 128,
        overlap: int = 16,
        progress: Callable[[float], None] = lambda fraction: None,
        should_stop: Callable[[], bool] = lambda: False,
        between_steps: Callable[[], None] = lambda: None,
    ) -> np.ndarray:
        """HxWx3 uint8 RGB -> (H*scale)x(W*scale)x3 uint8, in tiles of `tile` input pixels
        (0: whole image) each seeing `overlap` pixels of context; `between_steps()` runs
        between two tiles."""
        tiles = plan(rgb.shape[0], rgb.shape[1], tile, overlap)
        return upscale_tiled(
            rgb, self.runner, self.scale, tiles, progress, should_stop, between_steps
        )

    def __call__(
        self, image: Image.Image, tile: int = 128, overlap: int = 16, **hooks: Any
    ) -> tuple[Image.Image, dict[str, Any]]:
        """An RGB / RGBA / L image upscaled; alpha is resized on its own (Lanczos) and
        kept, grey stays grey. Returns the image and what to record about the run."""
        started = time.perf_counter()
        rgb = np.asarray(image.convert("RGB"))
        out = Image.fromarray(self.upscale(rgb, tile, overlap, **hooks))
        if image.mode == "L":
            out = out.convert("L")
        elif "A" in image.getbands():
            alpha = image.getchannel("A").resize(out.size, Image.Resampling.LANCZOS)
            out.putalpha(alpha)
        info = {
            "model": self.ref,
            "variant": self.variant,
            "scale": self.scale,
            "tiles": len(plan(rgb.shape[0], rgb.shape[1], tile, overlap)),
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        return out, info
