"""Run a serialized TensorRT engine (TensorRT 10 tensor API) on CUDA through torch buffers.

Imported only by the `tensorrt` variant loader, after it checked that tensorrt and a
CUDA device exist. The engine's input is `lr` (1x3xHxW float32, 0..255) and its output
`sr`, as `pipelines.upscale.export` names them in the ONNX it is built from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipelines.upscale.tiles import Runner


def engine_runner(path: Path) -> Runner:  # pragma: no cover (needs tensorrt and CUDA)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]

    def run(x: np.ndarray) -> np.ndarray:
        source = torch.from_numpy(x).cuda().contiguous()
        context.set_input_shape(inputs[0], tuple(source.shape))
        target = torch.empty(tuple(context.get_tensor_shape(outputs[0])), device="cuda")
        context.set_tensor_address(inputs[0], source.data_ptr())
        context.set_tensor_address(outputs[0], target.data_ptr())
        stream = torch.cuda.current_stream()
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return target.cpu().numpy()

    return run
