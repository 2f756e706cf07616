"""Variant kind -> how to load it: one table, no branches in the pipelines.

A manifest's variant names a `kind` (fp32, bf16, fp16, fp8, int8_weight_only, nf4,
onnx, tensorrt). Each kind maps to a loader that turns the variant into the
arguments of diffusers' `from_pretrained`: the compute dtype and, for quantized
kinds, a `PipelineQuantizationConfig` for the components the variant names
(`options["quantize"]`, default: the denoiser). `onnx` and `tensorrt` variants
instead hand `from_pretrained` a ready transformer that runs the variant's exported
file (`exported.py`), so the torch transformer is never loaded. `load_pipeline` then
moves the pipeline to the device and compiles the denoiser when the variant asks.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline, PipelineQuantizationConfig, TorchAoConfig

from jobs.errors import ModelUnavailable
from model_store.manifest import Variant

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
DENOISERS = ("transformer", "unet")


@dataclass(frozen=True)
class LoadArgs:
    """What `from_pretrained` gets for one variant."""

    dtype: torch.dtype
    quantization: PipelineQuantizationConfig | None = None
    movable: bool = True
    """False for bitsandbytes weights, which are placed on the GPU as they load."""
    built: Callable[[Path], dict[str, Any]] | None = None
    """Model folder -> components built here rather than by `from_pretrained` (an
    exported transformer)."""


VariantLoader = Callable[[Variant, torch.device, list[str]], LoadArgs]


def compute_dtype(variant: Variant, default: str) -> torch.dtype:
    name = str(variant.options.get("dtype", default))
    try:
        return DTYPES[name]
    except KeyError:
        raise ModelUnavailable(
            f"variant {variant.name}: dtype {name!r} is not one of {', '.join(DTYPES)}"
        ) from None


def plain(dtype: str) -> VariantLoader:
    """Weights loaded as stored, computed in `dtype`."""

    def load(variant: Variant, device: torch.device, components: list[str]) -> LoadArgs:
        return LoadArgs(compute_dtype(variant, dtype))

    return load


def torchao_weight_only(config_name: str) -> VariantLoader:
    """Weights quantized on load by torchao (`Int8WeightOnlyConfig`, ...); CPU and GPU."""

    def load(variant: Variant, device: torch.device, components: list[str]) -> LoadArgs:
        import torchao.quantization as ao

        mapping: dict[str, Any] = {
            name: TorchAoConfig(getattr(ao, config_name)()) for name in components
        }
        # torchao's integer kernels expect bf16 activations.
        return LoadArgs(
            compute_dtype(variant, "bf16"), PipelineQuantizationConfig(quant_mapping=mapping)
        )

    return load


def bitsandbytes_nf4(variant: Variant, device: torch.device, components: list[str]) -> LoadArgs:
    """4-bit NormalFloat weights via bitsandbytes: CUDA only."""
    if device.type != "cuda":
        raise ModelUnavailable(
            f"variant {variant.name} (nf4) needs a CUDA GPU (bitsandbytes); this worker runs "
            f"on {device.type}: run the job on a GPU tier or publish an int8/fp32 variant"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelUnavailable(
            f"variant {variant.name} (nf4) needs the bitsandbytes package on this worker"
        )
    from diffusers import BitsAndBytesConfig

    dtype = compute_dtype(variant, "bf16")
    config: Any = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )
    quant = PipelineQuantizationConfig(quant_mapping=dict.fromkeys(components, config))
    return LoadArgs(dtype, quant, movable=False)


def variant_file(variant: Variant, suffixes: tuple[str, ...]) -> str:
    """The path (inside the model folder) of the variant's file ending in one of `suffixes`."""
    for entry in variant.files:
        if entry.path.endswith(suffixes):
            return entry.path
    raise ModelUnavailable(
        f"variant {variant.name} ({variant.kind}) lists no {' or '.join(suffixes)} file; "
        "publish it with `darkroom models export-onnx` or `darkroom models build-engine`"
    )


def _exported(variant: Variant) -> None:
    if variant.compile:
        raise ModelUnavailable(
            f"variant {variant.name} ({variant.kind}) is already compiled; drop compile=true"
        )
    if variant.options.get("component", "transformer") != "transformer":
        raise ModelUnavailable(
            f"variant {variant.name}: only an exported transformer is supported, "
            f"not {variant.options['component']!r}"
        )


def onnxruntime_transformer(
    variant: Variant, device: torch.device, components: list[str]
) -> LoadArgs:
    """The transformer as an onnxruntime session over the variant's `.onnx` file."""
    _exported(variant)
    graph = variant_file(variant, (".onnx",))

    def build(path: Path) -> dict[str, Any]:
        from pipelines.generative.exported import OnnxRuntimeTransformer, read_config

        return {"transformer": OnnxRuntimeTransformer(path / graph, read_config(path), device)}

    return LoadArgs(torch.float32, built=build)


def tensorrt_transformer(variant: Variant, device: torch.device, components: list[str]) -> LoadArgs:
    """The transformer as a TensorRT engine (the variant's `.engine` file); CUDA only."""
    from pipelines.generative.tensorrt_engine import missing_tensorrt

    reason = missing_tensorrt(device)
    if reason:
        raise ModelUnavailable(
            f"variant {variant.name} (tensorrt) cannot load here: {reason}; run the job on a "
            "GPU tier with TensorRT, or on a tier whose variant is a torch or onnx kind"
        )
    _exported(variant)
    engine = variant_file(variant, (".engine", ".plan"))

    def build(path: Path) -> dict[str, Any]:
        from pipelines.generative.exported import read_config
        from pipelines.generative.tensorrt_engine import TensorRTTransformer

        return {"transformer": TensorRTTransformer(path / engine, read_config(path), device)}

    return LoadArgs(torch.float32, built=build)


# fp8: weight-only float8 runs anywhere torchao does; a variant may ask for float8
# activations too (`options.fp8: dynamic`), which needs an SM 8.9+ GPU.
FP8_CONFIGS = {
    "weight_only": "Float8WeightOnlyConfig",
    "dynamic": "Float8DynamicActivationFloat8WeightConfig",
}


def float8(variant: Variant, device: torch.device, components: list[str]) -> LoadArgs:
    mode = str(variant.options.get("fp8", "weight_only"))
    if mode not in FP8_CONFIGS:
        raise ModelUnavailable(
            f"variant {variant.name}: fp8 mode {mode!r} is not one of {', '.join(FP8_CONFIGS)}"
        )
    return torchao_weight_only(FP8_CONFIGS[mode])(variant, device, components)


LOADERS: dict[str, VariantLoader] = {
    "fp32": plain("fp32"),
    "bf16": plain("bf16"),
    "fp16": plain("fp16"),
    "fp8": float8,
    "int8_weight_only": torchao_weight_only("Int8WeightOnlyConfig"),
    "nf4": bitsandbytes_nf4,
    "onnx": onnxruntime_transformer,
    "tensorrt": tensorrt_transformer,
}


def denoiser_name(path: Path) -> str:
    """The component that does the denoising ("transformer" or "unet") of a saved pipeline."""
    index = json.loads((path / "model_index.json").read_text())
    for name in DENOISERS:
        if name in index:
            return name
    raise ModelUnavailable(f"{path} has no transformer or unet component")


def load_pipeline(
    cls: type[DiffusionPipeline], path: Path, variant: Variant, device: torch.device
) -> DiffusionPipeline:
    """Load the saved pipeline at `path` as `variant` says, on `device`."""
    try:
        loader = LOADERS[variant.kind]
    except KeyError:
        raise ModelUnavailable(f"no loader for variant kind {variant.kind!r}") from None
    denoiser = denoiser_name(path)
    components = list(variant.options.get("quantize", [denoiser]))
    args = loader(variant, device, components)
    built = args.built(path) if args.built else {}
    pipe = cls.from_pretrained(
        path,
        dtype=args.dtype,
        quantization_config=args.quantization,
        local_files_only=True,
        **built,
    )
    if args.movable:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if variant.compile:
        # Compiled once per process; the first call pays the compile (tens of seconds).
        getattr(pipe, denoiser).compile(mode=variant.options.get("compile_mode", "default"))
    return pipe
