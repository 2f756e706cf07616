"""Variant kind -> runner: one table (like `pipelines.generative.variants.LOADERS`).

A runner takes float32 NCHW RGB 0..255 and returns the upscaled float32 NCHW. Kinds:
`fp32` and `bf16` / `fp16` (torch autocast) run the torch module; `onnx` runs the
variant's ONNX file with onnxruntime (fp32 export, or its static int8 QDQ quantization:
the `onnx-int8` variant is an `onnx` kind with another file); `tensorrt` deserializes the
variant's engine file where the tensorrt package and a CUDA device exist.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from jobs.errors import ModelUnavailable
from model_store.manifest import Variant
from pipelines.upscale.arch import RDN, SRConfig, build
from pipelines.upscale.tiles import Runner

WEIGHTS = "model.safetensors"
CONFIG = "config.json"

VariantLoader = Callable[[Path, Variant, SRConfig, str], Runner]


def load_module(folder: Path, config: SRConfig, device: str) -> torch.nn.Module:
    """The fp32 torch network with the folder's safetensors weights, in eval mode."""
    from safetensors.torch import load_file

    module = build(config)
    module.load_state_dict(load_file(str(folder / WEIGHTS)))
    if isinstance(module, RDN):
        module.fold()  # exact, and 2.6x faster at x4 (see RDN.fold)
    return module.eval().to(device)


def torch_runner(module: torch.nn.Module, device: str, dtype: torch.dtype | None) -> Runner:
    """Runs `module`; `dtype` (bf16, fp16) turns on autocast, None runs fp32."""
    device_type = torch.device(device).type

    def run(x: np.ndarray) -> np.ndarray:
        autocast = torch.autocast(device_type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            y = module(torch.from_numpy(x).to(device))
        return y.float().cpu().numpy()

    return run


def autocast(dtype: torch.dtype | None) -> VariantLoader:
    def load(folder: Path, variant: Variant, config: SRConfig, device: str) -> Runner:
        if dtype is torch.float16 and not device.startswith("cuda"):
            raise ModelUnavailable(
                f"variant {variant.name} (fp16) runs on CUDA; on CPU use fp32, bf16 or onnx"
            )
        return torch_runner(load_module(folder, config, device), device, dtype)

    return load


def variant_file(folder: Path, variant: Variant, suffix: str) -> Path:
    found = [folder / f.path for f in variant.files if f.path.endswith(suffix)]
    if not found:
        raise ModelUnavailable(f"variant {variant.name} ({variant.kind}) lists no {suffix} file")
    return found[0]


def onnx_runner(path: Path, device: str, threads: int | None = None) -> Runner:
    """onnxruntime on `path`: CUDA provider when the device is CUDA and it is installed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        result: np.ndarray = session.run(None, {name: x})[0]
        return result

    return run


def onnx(folder: Path, variant: Variant, config: SRConfig, device: str) -> Runner:
    if importlib.util.find_spec("onnxruntime") is None:
        raise ModelUnavailable(f"variant {variant.name} (onnx) needs onnxruntime on this worker")
    threads = torch.get_num_threads() if not device.startswith("cuda") else None
    return onnx_runner(variant_file(folder, variant, ".onnx"), device, threads)


def tensorrt(folder: Path, variant: Variant, config: SRConfig, device: str) -> Runner:
    """A serialized TensorRT engine (built by `darkroom models build-engine`), CUDA only.

    Raises: ModelUnavailable where tensorrt or a CUDA device is missing.
    """
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("the tensorrt package")
    if not (device.startswith("cuda") and torch.cuda.is_available()):
        missing.append("a CUDA device")
    if missing:
        raise ModelUnavailable(
            f"variant {variant.name} (tensorrt) needs {' and '.join(missing)}; this worker "
            f"runs on {device}: run the job on a tier whose variant is fp32, bf16 or onnx"
        )
    from pipelines.upscale.engine import engine_runner  # pragma: no cover (needs CUDA)

    return engine_runner(variant_file(folder, variant, ".engine"))  # pragma: no cover


LOADERS: dict[str, VariantLoader] = {
    "fp32": autocast(None),
    "bf16": autocast(torch.bfloat16),
    "fp16": autocast(torch.float16),
    "onnx": onnx,
    "tensorrt": tensorrt,
}


def load_runner(folder: Path, variant: Variant, config: SRConfig, device: str) -> Runner:
    """The runner for `variant` of the model in `folder`.

    Raises: ModelUnavailable for a kind with no loader, or one this worker cannot run.
    """
    try:
        loader = LOADERS[variant.kind]
    except KeyError:
        raise ModelUnavailable(
            f"variant {variant.name}: kind {variant.kind!r} has no upscale loader; "
            f"known: {', '.join(LOADERS)}"
        ) from None
    return loader(folder, variant, config, device)
