"""ONNX variants of an upscale model: an fp32 export and its static int8 QDQ quantization.

Export: `torch.onnx.export(dynamo=True)`, opset 18, dynamic height and width (FACTS: max
diff 1e-4 levels). Quantization: onnxruntime's `quantize_static`, QDQ format, per-channel
int8 weights and uint8 activations, calibrated on crops of the scikit-image photos with
onnxruntime's percentile method (99.999 %). Measured on thick x4: -0.10 dB against fp32
(MinMax on the same crops: -0.17 dB); FACTS: 3.6x faster than fp32 torch on idle cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipelines.upscale.arch import SRConfig
from pipelines.upscale.quality import photos

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CALIBRATION_CROPS = 16
CALIBRATION_SIDE = 48  # input pixels; small keeps the RRDN calibration to seconds


def export_onnx(module: torch.nn.Module, path: Path) -> Path:
    """`module` (NCHW float 0..255 in and out) as ONNX with dynamic height and width."""
    from torch.export import Dim

    example = torch.rand(1, 3, 64, 48) * 255
    dims = {"x": {2: Dim("height", min=8, max=8192), 3: Dim("width", min=8, max=8192)}}
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        opset_version=18,
        input_names=["lr"],
        output_names=["sr"],
        dynamic_shapes=dims,
        verbose=False,
    )
    assert program is not None
    program.save(str(path))
    return path


def calibration_crops(
    count: int = CALIBRATION_CROPS, side: int = CALIBRATION_SIDE
) -> list[np.ndarray]:
    """`count` float32 1x3xSxS crops (0..255) from the scikit-image photos, fixed seed."""
    rng = np.random.default_rng(0)
    images = list(photos(256).values())
    crops = []
    for i in range(count):
        image = images[i % len(images)]
        top, left = rng.integers(0, image.shape[0] - side), rng.integers(0, image.shape[1] - side)
        crop = image[top : top + side, left : left + side].astype(np.float32)
        crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None]))
    return crops


class _Crops:
    """onnxruntime's CalibrationDataReader protocol over a list of inputs."""

    def __init__(self, name: str, crops: list[np.ndarray]) -> None:
        self._items = iter([{name: c} for c in crops])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_int8(source: Path, target: Path, config: SRConfig) -> Path:
    """Static int8 QDQ quantization of the ONNX model at `source`, calibrated on photos."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    name = (
        ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    )
    quantize_static(
        str(source),
        str(target),
        _Crops(name, calibration_crops()),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 99.999th-percentile ranges: thick x4 -0.10 dB vs fp32, MinMax -0.17 dB (same crops)
        calibrate_method=CalibrationMethod.Percentile,
    )
    return target
