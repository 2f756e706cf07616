"""Publish exported variants: ONNX from a published torch model, TensorRT from its ONNX.

Versions are immutable, so a new variant is a new version: the source version's
files (hard-linked where the file system allows) plus the exported files, its
variants unchanged, and the new variant listed first, so the tiers it names run it
(`Manifest.variant_for` takes the first variant meant for a tier). The new variant
is scored against the torch model at publish time (`parity.score_variant`); the
score goes into `options.score`, and a variant below `min_psnr_db` is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jobs.errors import ModelUnavailable
from model_store import FileEntry, Manifest, ModelStore, Variant
from model_store.errors import VariantRefused
from model_store.folder import sha256_file
from pipelines.generative.onnx_export import ONNX_FILE, OPSET, export_transformer
from pipelines.generative.parity import SCORED_CLASSES, ParityCase, Score, score_variant
from pipelines.generative.tensorrt_engine import ENGINE_FILE, TokenProfile, build_engine

MIN_PSNR_DB = 40.0
"""Default publish gate. fp32 onnxruntime scored 128 dB on the tiny Kontext model; a
full-size export that lands under 40 dB (visible at 8 bits) has gone wrong somewhere."""


@dataclass(frozen=True)
class Target:
    """Where and how the new variant is published."""

    version: str
    name: str | None = None
    """Model name of the new version; None keeps the source's."""
    variant: str = "onnx"
    tiers: Sequence[str] = ("cpu",)
    min_psnr_db: float = MIN_PSNR_DB
    case: ParityCase = field(default_factory=ParityCase)


def publish_onnx(store: ModelStore, ref: str, target: Target) -> Manifest:
    """Export the transformer of `ref` to ONNX and publish it as an `onnx` variant.

    Raises:
        ModelUnavailable: `ref` is not published or is not a model this exports.
        VariantRefused: the export scored under `target.min_psnr_db`.
    """
    source = _exportable(store.resolve(ref))
    with _staged(store, source) as folder:
        # 1. export the fp32 transformer beside the source files
        from diffusers import FluxTransformer2DModel

        transformer = FluxTransformer2DModel.from_pretrained(
            folder / "transformer", torch_dtype=torch.float32
        )
        written = export_transformer(transformer, folder / ONNX_FILE)
        del transformer
        # 2. score it against torch on this machine's CPU, then publish
        options = {
            "component": "transformer",
            "exporter": f"torch.onnx.export(dynamo=True) opset {OPSET}, torch {torch.__version__}",
            "exported_from": source.ref,
        }
        variant = _variant(folder, target, "onnx", written, _memory_of(source), options)
        score = _scored(folder, source, variant, torch.device("cpu"), target)
        return _publish(store, folder, source, target, variant, score)


def publish_engine(
    store: ModelStore,
    ref: str,
    onnx_variant: str,
    target: Target,
    profile: TokenProfile,
    *,
    fp16: bool = False,
) -> Manifest:
    """Build a TensorRT engine from the `onnx_variant` of `ref` and publish it (CUDA only).

    Raises:
        ModelUnavailable: no such onnx variant, or TensorRT / CUDA missing.
        VariantRefused: the engine scored under `target.min_psnr_db`.
    """
    source = _exportable(store.resolve(ref))
    onnx = _onnx_variant(source, onnx_variant)
    with _staged(store, source) as folder:
        import tensorrt as trt

        from pipelines.generative.exported import read_config
        from pipelines.generative.variants import variant_file

        graph = folder / variant_file(onnx, (".onnx",))
        engine = build_engine(graph, folder / ENGINE_FILE, read_config(folder), profile, fp16=fp16)
        options = {
            "component": "transformer",
            "built_from": f"{source.ref}:{onnx.name}",
            "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(),
            "fp16": fp16,
            "image_tokens": list(profile.image),
            "text_tokens": list(profile.text),
        }
        variant = _variant(folder, target, "tensorrt", [engine], onnx.memory_gb, options)
        score = _scored(folder, source, variant, torch.device("cuda"), target)
        return _publish(store, folder, source, target, variant, score)


def _exportable(manifest: Manifest) -> Manifest:
    if manifest.pipeline_class not in SCORED_CLASSES:
        raise ModelUnavailable(
            f"{manifest.ref} is a {manifest.pipeline_class}; exported variants are built "
            f"for {', '.join(SCORED_CLASSES)} models"
        )
    return manifest


def _onnx_variant(manifest: Manifest, name: str) -> Variant:
    found = {v.name: v for v in manifest.variants}
    variant = found.get(name)
    if variant is None or variant.kind != "onnx":
        onnx = [v.name for v in manifest.variants if v.kind == "onnx"]
        raise ModelUnavailable(
            f"{manifest.ref} has no onnx variant {name!r} (its onnx variants: "
            f"{', '.join(onnx) or 'none'}); publish one with `darkroom models export-onnx`"
        )
    return variant


def _memory_of(manifest: Manifest) -> float:
    """The fp32 torch variant's resident memory: the export keeps the weights in fp32."""
    sizes = [v.memory_gb for v in manifest.variants if v.kind == "fp32"]
    return max(sizes) if sizes else max((v.memory_gb for v in manifest.variants), default=0.0)


def _variant(
    folder: Path,
    target: Target,
    kind: str,
    files: list[Path],
    memory_gb: float,
    options: dict[str, Any],
) -> Variant:
    entries = [
        FileEntry(
            path=p.relative_to(folder).as_posix(), sha256=sha256_file(p), size=p.stat().st_size
        )
        for p in files
    ]
    return Variant(
        name=target.variant,
        kind=kind,
        tiers=list(target.tiers),
        memory_gb=memory_gb,
        files=entries,
        options=options,
    )


def _scored(
    folder: Path, source: Manifest, variant: Variant, device: torch.device, target: Target
) -> Score:
    score = score_variant(folder, source.pipeline_class, variant, device, target.case)
    if score.psnr_db < target.min_psnr_db:
        raise VariantRefused(
            f"{variant.kind} variant of {source.ref} scored {score.psnr_db:.1f} dB PSNR "
            f"(max diff {score.max_abs_diff:.1f} levels) against fp32 torch, under the "
            f"{target.min_psnr_db:g} dB gate; nothing was published"
        )
    return score


def _publish(
    store: ModelStore,
    folder: Path,
    source: Manifest,
    target: Target,
    variant: Variant,
    score: Score,
) -> Manifest:
    options = {**variant.options, "score": score.as_options()}
    scored = variant.model_copy(update={"options": options})
    kept = [v for v in source.variants if v.name != scored.name]
    return store.publish(
        folder,
        target.name or source.name,
        target.version,
        variants=[scored, *kept],
        pipeline_class=source.pipeline_class,
        license=source.license,
        components=dict(source.components),
        source=f"{source.ref} + {scored.kind} variant {scored.name}",
    )


@contextmanager
def _staged(store: ModelStore, manifest: Manifest) -> Iterator[Path]:
    """A scratch copy of the published files of `manifest`: hard links to the cached copy
    (the scratch folder sits beside the cache, on its file system), else copies."""
    local = store.pull(manifest.ref)
    beside = store.cache.root.parent
    with tempfile.TemporaryDirectory(prefix=".darkroom-export-", dir=beside) as scratch:
        folder = Path(scratch) / "model"
        with local.in_use():
            for entry in manifest.files:
                _link_or_copy(local.path / entry.path, folder / entry.path)
        yield folder


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
