"""How far an exported variant's edits are from the torch model's: the publish-time score.

Both pipelines load from the same model folder and run the same edit (a photo from
scikit-image's data, a fixed prompt, seed, size and step count); the score compares
the two decoded images in 8-bit levels: the largest difference of any channel of any
pixel, and PSNR (10 log10(255^2 / MSE), dB, capped at `PSNR_CAP`: identical images
would score infinity, which JSON cannot hold). It also compares one denoiser call on
the exporter's example inputs (float32, unscaled), so a gap in the transformer can be
told apart from the sampler amplifying it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FluxKontextPipeline
from PIL import Image
from skimage import data

from jobs.errors import ModelUnavailable
from model_store.manifest import Variant
from pipelines.generative.onnx_export import example_inputs
from pipelines.generative.variants import load_pipeline

PSNR_CAP = 100.0
PROMPT = "make it a watercolor painting"
SCORED_CLASSES: dict[str, type[Any]] = {"FluxKontextPipeline": FluxKontextPipeline}
"""Pipeline classes whose transformer can be exported and scored."""


@dataclass(frozen=True)
class ParityCase:
    """The edit both pipelines run: longest side (px, a multiple of 16), steps, seed."""

    side: int = 128
    steps: int = 4
    seed: int = 0
    prompt: str = PROMPT

    def photo(self) -> Image.Image:
        """scikit-image's `chelsea` (451x300 RGB) at `side` px wide, 16-px multiples."""
        width = self.side // 16 * 16
        height = max(16, round(width * 300 / 451 / 16) * 16)
        return Image.fromarray(data.chelsea()).resize((width, height), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Score:
    """An exported variant against the torch model on one `ParityCase`."""

    psnr_db: float
    """PSNR of the variant's image against torch's, in dB (higher is closer)."""
    max_abs_diff: float
    """Largest difference of one channel of one pixel, in 8-bit levels (0-255)."""
    transformer_max_abs_diff: float
    """Largest difference of one denoiser output value on the example inputs."""
    against: str
    side: int
    steps: int
    seed: int

    def as_options(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def psnr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB, max abs diff in levels) of two float images in [0, 1]."""
    diff = (a.astype(np.float64) - b.astype(np.float64)) * 255.0
    mse = float(np.mean(diff**2))
    value = PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))
    return float(value), float(np.abs(diff).max())


def _edit(pipe: Any, case: ParityCase) -> np.ndarray:
    photo = case.photo()
    width, height = photo.size
    result = pipe(
        image=photo,
        prompt=case.prompt,
        height=height,
        width=width,
        max_area=width * height,
        _auto_resize=False,
        num_inference_steps=case.steps,
        generator=torch.Generator(device="cpu").manual_seed(case.seed),
        output_type="np",
    )
    image: np.ndarray = result.images[0]
    return image


@torch.inference_mode()
def _denoiser_gap(reference: Any, exported: Any) -> float:
    config = dict(reference.transformer.config)
    inputs = example_inputs(config)
    device = reference.transformer.device
    on_device = {k: v.to(device) for k, v in inputs.items()}
    want = reference.transformer(**on_device, return_dict=False)[0]
    got = exported.transformer(**on_device, return_dict=False)[0]
    return float((want.float() - got.float()).abs().max())


def score_variant(
    folder: Path,
    pipeline_class: str,
    variant: Variant,
    device: torch.device,
    case: ParityCase | None = None,
) -> Score:
    """Score `variant` of the model in `folder` against its fp32 torch weights on `device`.

    Raises:
        ModelUnavailable: the pipeline class is not one whose exports are scored here,
            or either variant fails to load.
    """
    case = case or ParityCase()
    cls = SCORED_CLASSES.get(pipeline_class)
    if cls is None:
        raise ModelUnavailable(
            f"exported variants are built for {', '.join(SCORED_CLASSES)} models, "
            f"not {pipeline_class}"
        )
    torch_fp32 = Variant(name="fp32", kind="fp32", tiers=list(variant.tiers), memory_gb=0)
    reference = load_pipeline(cls, folder, torch_fp32, device)
    exported = load_pipeline(cls, folder, variant, device)
    value, worst = psnr(_edit(reference, case), _edit(exported, case))
    return Score(
        psnr_db=value,
        max_abs_diff=worst,
        transformer_max_abs_diff=_denoiser_gap(reference, exported),
        against="fp32 torch",
        side=case.side,
        steps=case.steps,
        seed=case.seed,
    )
