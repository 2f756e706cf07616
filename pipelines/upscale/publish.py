"""Convert an UpscalerJS package (or a tiny random model) and publish it with its variants.

A model folder holds `config.json` (network shape, origin), `model.safetensors` (fp32),
and the ONNX files. Before publishing, every variant is scored against fp32 on held-in
photos (PSNR-Y vs the originals, PSNR and max abs difference vs fp32's output); the
scores go into the variant's `options.score`, and a variant that loses more than
MAX_LOSS_DB against fp32 is refused (left out, with the reason).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from jobs.errors import ModelUnavailable
from jobs.ops.upscale import model_name
from model_store import Manifest, ModelStore
from model_store.folder import scan
from model_store.manifest import Variant
from pipelines.upscale.arch import SRConfig, build
from pipelines.upscale.export import INT8_FILE, ONNX_FILE, export_onnx, quantize_int8
from pipelines.upscale.pipeline import PIPELINE_CLASS, read_config
from pipelines.upscale.quality import degrade, photos, psnr_y
from pipelines.upscale.tfjs import UpscalerPackage, read_model
from pipelines.upscale.tiles import Runner, plan, upscale_tiled
from pipelines.upscale.variants import CONFIG, WEIGHTS, load_module, load_runner

MAX_LOSS_DB = 0.3
SCORE_SIDE = 128  # HR pixels per held-in photo crop: keeps scoring the RRDN to seconds
ACTIVATIONS_GB = 0.25  # one tile's activations (thick, 160 px tile with overlap), measured

# name -> (kind, tiers, bytes per parameter resident, extra file)
VARIANTS: dict[str, tuple[str, list[str], float, str | None]] = {
    "fp32": ("fp32", ["cpu"], 4, None),
    "bf16": ("bf16", ["a10", "a100"], 4, None),
    "fp16": ("fp16", ["edge"], 4, None),
    "onnx": ("onnx", ["cpu"], 4, ONNX_FILE),
    "onnx-int8": ("onnx", ["cpu"], 1, INT8_FILE),
}
DEFAULT_VARIANTS = tuple(VARIANTS)


class VariantRefused(Exception):
    """A variant lost more than MAX_LOSS_DB against fp32."""


def write_folder(
    folder: Path, config: SRConfig, state: dict[str, torch.Tensor], source: dict[str, Any]
) -> Path:
    """Write `config.json` + `model.safetensors` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / WEIGHTS))
    body = {"network": config.to_json(), "source": source}
    (folder / CONFIG).write_text(json.dumps(body, indent=2, sort_keys=True))
    return folder


def convert(package: UpscalerPackage, scale: int, folder: Path) -> SRConfig:
    """The package's x`scale` model as a model folder (fp32 weights)."""
    config, state = read_model(package, scale)
    meta = package.meta
    source = {"package": meta.get("name"), "version": meta.get("version")}
    write_folder(folder, config, state, source | {"license": meta.get("license")})
    return config


def add_onnx(folder: Path, int8: bool = True) -> None:
    """Export `model.onnx` (and its int8 quantization) next to the weights."""
    config = read_config(folder)
    module = load_module(folder, config, "cpu")
    export_onnx(module, folder / ONNX_FILE)
    if int8:
        quantize_int8(folder / ONNX_FILE, folder / INT8_FILE, config)


@dataclass(frozen=True)
class Score:
    """A variant against fp32 on the held-in photos (means over photos)."""

    psnr_y: float
    """dB of the variant's output vs the original photos."""
    loss_db: float
    """fp32's PSNR-Y minus the variant's: what the variant costs in quality."""
    psnr_vs_fp32: float
    max_abs_diff: int
    """largest difference from fp32's output, in 8-bit levels."""

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) if math.isfinite(v) else 99.0 for k, v in self.__dict__.items()}


def held_in(scale: int, side: int = SCORE_SIDE) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) pairs: bicubic-downscaled centre crops of the four scikit-image photos."""
    return [degrade(hr, scale) for hr in photos(side).values()]


def run_all(
    runner: Runner, scale: int, pairs: list[tuple[np.ndarray, np.ndarray]]
) -> list[np.ndarray]:
    return [upscale_tiled(lr, runner, scale, plan(*_size(lr), 0, 0)) for lr, _ in pairs]


def _size(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def score(
    outputs: list[np.ndarray],
    reference: list[np.ndarray],
    pairs: list[tuple[np.ndarray, np.ndarray]],
    scale: int,
) -> Score:
    """Score `outputs` against fp32's `reference` outputs and the originals."""
    mine = float(np.mean([psnr_y(o, hr, scale) for o, (_, hr) in zip(outputs, pairs, strict=True)]))
    base = float(
        np.mean([psnr_y(r, hr, scale) for r, (_, hr) in zip(reference, pairs, strict=True)])
    )
    vs = float(np.mean([psnr_y(o, r, scale) for o, r in zip(outputs, reference, strict=True)]))
    diff = max(
        int(np.abs(o.astype(int) - r.astype(int)).max())
        for o, r in zip(outputs, reference, strict=True)
    )
    return Score(mine, base - mine, vs, diff)


def score_variants(
    folder: Path, variants: Sequence[Variant], device: str = "cpu"
) -> tuple[list[Variant], dict[str, str]]:
    """Each variant scored (into `options.score`); those losing > MAX_LOSS_DB refused.

    Returns the kept variants and, per refused variant name, why.
    """
    config = read_config(folder)
    pairs = held_in(config.scale)
    reference = run_all(load_runner(folder, VARIANT_FP32, config, device), config.scale, pairs)
    kept, refused = [], {}
    for variant in variants:
        if variant.kind == "fp32":  # the reference itself: nothing to run again
            kept.append(_with_score(variant, score(reference, reference, pairs, config.scale)))
            continue
        try:
            runner = load_runner(folder, variant, config, device)
        except ModelUnavailable as exc:  # a kind this machine cannot run: published unscored
            kept.append(
                variant.model_copy(update={"options": {**variant.options, "score": str(exc)[:200]}})
            )
            continue
        result = score(run_all(runner, config.scale, pairs), reference, pairs, config.scale)
        if result.loss_db > MAX_LOSS_DB:
            refused[variant.name] = (
                f"loses {result.loss_db:.2f} dB PSNR-Y against fp32 (limit {MAX_LOSS_DB} dB)"
            )
            continue
        kept.append(_with_score(variant, result))
    return kept, refused


def _with_score(variant: Variant, result: Score) -> Variant:
    return variant.model_copy(update={"options": {**variant.options, "score": result.as_dict()}})


VARIANT_FP32 = Variant(name="fp32", kind="fp32", tiers=["cpu"], memory_gb=0)


def variant_list(folder: Path, names: Sequence[str], params: int) -> list[Variant]:
    """Variants named `names` (keys of VARIANTS), files hashed from `folder`."""
    entries = scan(folder)
    by_path = {e.path: e for e in entries}
    out = []
    for name in names:
        kind, tiers, per_param, extra = VARIANTS[name]
        memory = round(params * per_param * 1.2 / 2**30 + ACTIVATIONS_GB, 3)
        files = [by_path[extra]] if extra else []
        options = {"quantization": "static int8 QDQ, per-channel"} if name == "onnx-int8" else {}
        out.append(
            Variant(
                name=name, kind=kind, tiers=tiers, memory_gb=memory, files=files, options=options
            )
        )
    return out


def cpu_first(variants: list[Variant], config: SRConfig) -> list[Variant]:
    """The cpu tier runs the first of its variants: int8 ONNX for the small RDNs (slim,
    medium: -0.03 dB, 2.3x faster than folded fp32 torch, `bench.variants --preview`),
    fp32 for the RRDN (int8 costs it 0.10 dB of its ~0.85 dB gain over bicubic)."""
    if config.architecture != "rdn":
        return variants
    return sorted(variants, key=lambda v: v.name != "onnx-int8")


def publish_folder(
    store: ModelStore,
    folder: Path,
    name: str,
    version: str,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    alias: str | None = "stable",
) -> tuple[Manifest, dict[str, str]]:
    """Build the ONNX files the variants need, score, and publish `folder` as name@version.

    Returns the manifest and the refused variants with their reasons.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if {"onnx", "onnx-int8"} & set(variants) and not (folder / ONNX_FILE).exists():
        add_onnx(folder, int8="onnx-int8" in variants)
    config = read_config(folder)
    params = sum(p.numel() for p in build(config).parameters())
    kept, refused = score_variants(folder, variant_list(folder, variants, params))
    kept = cpu_first(kept, config)
    manifest = store.publish(
        folder,
        name,
        version,
        variants=kept,
        pipeline_class=PIPELINE_CLASS,
        license=json.loads((folder / CONFIG).read_text())["source"].get("license"),
    )
    if alias:
        store.promote(manifest.ref, alias)
    return manifest, refused


def import_package(
    store: ModelStore,
    package_path: Path,
    scale: int,
    work: Path,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    model: str | None = None,
) -> tuple[Manifest, dict[str, str]]:
    """`darkroom models import-upscalerjs`: convert, build variants, score, publish."""
    package = UpscalerPackage.open(package_path)
    size = model or str(package.meta["name"]).rsplit("-", 1)[-1]
    folder = work / f"x{scale}"
    convert(package, scale, folder)
    return publish_folder(
        store, folder, model_name(size, scale), str(package.meta["version"]), variants
    )
