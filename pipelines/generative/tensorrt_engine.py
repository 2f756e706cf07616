"""TensorRT engines for the FLUX transformer: built from its ONNX export, run on CUDA.

`build_engine` parses the ONNX file with TensorRT's parser and builds a serialized
engine with one optimization profile over the token axes (TensorRT's Python API:
Builder -> INetworkDefinition via OnnxParser -> IBuilderConfig -> serialized plan).
`TensorRTTransformer` runs such an engine in the pipeline in place of the torch
transformer, its inputs and outputs bound to CUDA tensors torch owns. `tensorrt` is
imported only here and only when needed: it needs CUDA and is not a dependency.

Not run on this project's machines (no CUDA, no TensorRT): `missing_tensorrt` says
why, and the variant loader and `darkroom models build-engine` refuse with it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jobs.errors import ModelUnavailable
from pipelines.generative.exported import (
    BATCH,
    GUIDANCE,
    OUTPUT,
    ExportedFluxTransformer,
    input_names,
)

ENGINE_FILE = "tensorrt/transformer.engine"
WORKSPACE_GB = 8.0


def missing_tensorrt(device: torch.device | None = None) -> str | None:
    """Why a TensorRT engine cannot be built or run here, or None if it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (it needs CUDA; pip install tensorrt-cu12)"
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    if device is not None and device.type != "cuda":
        return f"this worker runs on {device.type}, and TensorRT engines run on CUDA"
    return None


@dataclass(frozen=True)
class TokenProfile:
    """Shapes the engine accepts: image and text token counts (min, opt, max).

    Kontext feeds the noisy latents and the input image's latents together, so a
    W x H edit has 2 * (W/16) * (H/16) image tokens; T5 prompts are padded to 512.
    """

    image: tuple[int, int, int]
    text: tuple[int, int, int]

    @classmethod
    def for_sides(cls, opt_side: int, max_side: int, text_tokens: int = 512) -> TokenProfile:
        def tokens(side: int) -> int:
            return 2 * max(1, (side // 16) ** 2)

        image = (2, tokens(opt_side), tokens(max_side))
        return cls(image=image, text=(1, text_tokens, text_tokens))

    def shapes(self, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], ...]]:
        """Input name -> (min, opt, max) shape, for `IOptimizationProfile.set_shape`."""
        image_width, text_width = config["in_channels"], config["joint_attention_dim"]
        fixed = {
            "pooled_projections": (BATCH, config["pooled_projection_dim"]),
            "timestep": (BATCH,),
            GUIDANCE: (BATCH,),
        }
        by_axis = {
            "hidden_states": tuple((BATCH, n, image_width) for n in self.image),
            "encoder_hidden_states": tuple((BATCH, n, text_width) for n in self.text),
            "img_ids": tuple((n, 3) for n in self.image),
            "txt_ids": tuple((n, 3) for n in self.text),
        }
        return {name: by_axis.get(name) or (fixed[name],) * 3 for name in input_names(config)}


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    config: dict[str, Any],
    profile: TokenProfile,
    *,
    fp16: bool = False,
    workspace_gb: float = WORKSPACE_GB,
) -> Path:
    """Build a TensorRT engine for the exported transformer at `onnx_path`.

    The engine computes in the graph's precision (float32 as exported). `fp16` sets
    TensorRT 10's FP16 builder flag; TensorRT 11 removed it (networks are strongly
    typed: convert the ONNX graph to fp16 first, e.g. with ModelOpt AutoCast).

    Raises:
        ModelUnavailable: TensorRT or CUDA is missing, the parser rejects the graph,
            or the builder returns no engine.
    """
    reason = missing_tensorrt()
    if reason:
        raise ModelUnavailable(f"cannot build a TensorRT engine here: {reason}")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelUnavailable(f"TensorRT cannot parse {onnx_path}: {errors}")
    settings = builder.create_builder_config()
    settings.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ModelUnavailable(
                f"TensorRT {trt.__version__} has no FP16 builder flag (it builds the graph's "
                "own precision): build with --fp32, or convert the ONNX graph to fp16 first"
            )
        settings.set_flag(trt.BuilderFlag.FP16)
    shapes = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.shapes(config).items():
        shapes.set_shape(name, low, opt, high)
    settings.add_optimization_profile(shapes)
    plan = builder.build_serialized_network(network, settings)
    if plan is None:
        raise ModelUnavailable(f"TensorRT built no engine from {onnx_path} (see its log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(plan))
    return engine_path


class TensorRTTransformer(ExportedFluxTransformer):
    """The transformer as a deserialized TensorRT engine on the current CUDA device."""

    runtime = "TensorRT"

    def __init__(self, engine_path: Path, config: dict[str, Any], device: torch.device) -> None:
        super().__init__(config, device)
        import tensorrt as trt

        self.trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.trt_runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ModelUnavailable(
                f"TensorRT cannot load {engine_path}: built for another TensorRT version or "
                "GPU? Rebuild it on this worker's card with `darkroom models build-engine`"
            )
        self.context = self.engine.create_execution_context()

    def _run(self, feeds: dict[str, torch.Tensor | None]) -> torch.Tensor:
        bound = {
            name: t.detach().to(self.device, torch.float32).contiguous()
            for name, t in feeds.items()
            if t is not None
        }
        for name, tensor in bound.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out = torch.empty(
            tuple(self.context.get_tensor_shape(OUTPUT)), dtype=torch.float32, device=self.device
        )
        self.context.set_tensor_address(OUTPUT, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT failed to run the transformer engine")
        stream.synchronize()
        return out
