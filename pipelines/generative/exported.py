"""A FLUX transformer run by an exported runtime (onnxruntime, TensorRT) inside diffusers.

`FluxKontextPipeline` calls its `transformer` as a torch module and reads `config`,
`dtype` and `device` off it. `ExportedFluxTransformer` is that module with no weights
of its own: `forward` turns the pipeline's keyword arguments into the exported graph's
named inputs and the graph's output back into a tensor. Subclasses supply `_run`.
Written by hand because diffusers has no ONNX / TensorRT path for FLUX (its ONNX
pipelines cover Stable Diffusion only).

The exported graph (see `onnx_export.py`) takes batch 1 (one edit per job) and any
number of image and text tokens:

    hidden_states          float32 (1, image_tokens, in_channels)
    encoder_hidden_states  float32 (1, text_tokens, joint_attention_dim)
    pooled_projections     float32 (1, pooled_projection_dim)
    timestep               float32 (1,)   sigma in [0, 1] (the pipeline divides by 1000)
    img_ids                float32 (image_tokens, 3)
    txt_ids                float32 (text_tokens, 3)
    guidance               float32 (1,)   only when config.guidance_embeds
    -> sample              float32 (1, image_tokens, out_channels)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import FrozenDict
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from jobs.errors import InputInvalid, ModelUnavailable

OUTPUT = "sample"
TENSOR_INPUTS = (
    "hidden_states",
    "encoder_hidden_states",
    "pooled_projections",
    "timestep",
    "img_ids",
    "txt_ids",
)
GUIDANCE = "guidance"
BATCH = 1
FLUX_TRANSFORMER = "FluxTransformer2DModel"


def input_names(config: dict[str, Any]) -> list[str]:
    """The exported graph's inputs, in order, for a transformer with this config."""
    return [*TENSOR_INPUTS, *([GUIDANCE] if config.get("guidance_embeds") else [])]


def read_config(folder: Path) -> dict[str, Any]:
    """The saved config of the model's FLUX transformer (`<model>/transformer/config.json`).

    Raises:
        ModelUnavailable: it is missing, unreadable, or not a `FluxTransformer2DModel`'s.
    """
    path = folder / "transformer" / "config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"{path} is missing or unreadable: {exc}") from None
    if config.get("_class_name") != FLUX_TRANSFORMER:
        raise ModelUnavailable(
            f"{path} is a {config.get('_class_name')}; exported variants run a {FLUX_TRANSFORMER}"
        )
    return config


class ExportedFluxTransformer(ModelMixin):  # type: ignore[misc]
    """A weightless stand-in for `FluxTransformer2DModel` that runs an exported graph.

    A `ModelMixin` because `from_pretrained` accepts only those as a passed component.
    """

    runtime = "exported"

    def __init__(self, config: dict[str, Any], device: torch.device) -> None:
        super().__init__()
        self._internal_dict = FrozenDict(config)
        self._device = device
        self.inputs = input_names(config)

    @property
    def config(self) -> FrozenDict:
        """The torch transformer's config (`in_channels`, `guidance_embeds`, ...)."""
        return self._internal_dict

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor,
        timestep: torch.Tensor,
        img_ids: torch.Tensor,
        txt_ids: torch.Tensor,
        guidance: torch.Tensor | None = None,
        joint_attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        **unsupported: Any,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """One denoiser call, as `FluxTransformer2DModel.forward` takes it (batch 1).

        Raises:
            InputInvalid: the pipeline asked for what the graph cannot do (batch > 1,
                LoRA scales, IP-Adapter embeddings, ControlNet residuals).
        """
        self._refuse_unsupported(hidden_states.shape[0], joint_attention_kwargs, unsupported)
        given = {
            "hidden_states": hidden_states,
            "encoder_hidden_states": encoder_hidden_states,
            "pooled_projections": pooled_projections,
            "timestep": timestep,
            "img_ids": img_ids,
            "txt_ids": txt_ids,
            GUIDANCE: guidance,
        }
        sample = self._run({name: given[name] for name in self.inputs}).to(hidden_states.dtype)
        return Transformer2DModelOutput(sample=sample) if return_dict else (sample,)

    def _refuse_unsupported(
        self, batch: int, attention: dict[str, Any] | None, extra: dict[str, Any]
    ) -> None:
        used = [k for k, v in extra.items() if v is not None and v is not False]
        if attention or used or batch != BATCH:
            asked = sorted([*(attention or {}), *used])
            raise InputInvalid(
                f"the {self.runtime} transformer runs one image at a time with no LoRA, "
                f"IP-Adapter or ControlNet inputs (asked: batch {batch}, "
                f"{', '.join(asked) or 'nothing else'}); use a torch variant for those"
            )

    def _run(self, feeds: dict[str, torch.Tensor | None]) -> torch.Tensor:
        """The graph's `sample` output for `feeds` (input name -> tensor)."""
        raise NotImplementedError


class OnnxRuntimeTransformer(ExportedFluxTransformer):
    """The transformer as an onnxruntime session (CPU, or CUDA where its provider is)."""

    runtime = "onnxruntime"

    def __init__(self, onnx_path: Path, config: dict[str, Any], device: torch.device) -> None:
        super().__init__(config, device)
        self.session = open_session(onnx_path, device)
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if graph_inputs != self.inputs:
            raise ModelUnavailable(
                f"{onnx_path} takes {graph_inputs}, not the transformer's {self.inputs}: "
                "re-export it from this model"
            )

    def _run(self, feeds: dict[str, torch.Tensor | None]) -> torch.Tensor:
        arrays = {
            name: np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
            for name, t in feeds.items()
            if t is not None
        }
        (sample,) = self.session.run([OUTPUT], arrays)
        return torch.from_numpy(sample).to(self.device)


def open_session(onnx_path: Path, device: torch.device) -> Any:
    """An onnxruntime session for `onnx_path` (external weights beside it), on `device`.

    Uses as many intra-op threads as torch does in this process, so a worker that
    limits torch's threads limits onnxruntime's too.

    Raises:
        ModelUnavailable: onnxruntime is not installed, the device has no provider,
            or the file does not load.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelUnavailable(
            "onnx variants need the onnxruntime package on this worker (the gen extra)"
        ) from None
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    available = ort.get_available_providers()
    if provider not in available:
        raise ModelUnavailable(
            f"onnxruntime here has no {provider} (it has {', '.join(available)}); install "
            "onnxruntime-gpu for a CUDA worker, or run the onnx variant on a CPU tier"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=[provider])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelUnavailable(f"onnxruntime cannot load {onnx_path}: {exc}") from None
