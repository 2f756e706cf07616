"""Export a FLUX transformer (`FluxTransformer2DModel`) to ONNX with `torch.onnx.export`.

The dynamo exporter (`dynamo=True`, opset 18) traces the module with `torch.export`
and keeps the image- and text-token counts symbolic, so one file serves every image
size and prompt length. The batch stays 1: with a symbolic batch, `torch.export`
fails inside the transformer (a guard `Eq(1, batch)`, measured with torch 2.13 and
diffusers 0.42), and a job edits one image. Weights go to an external-data file beside
the graph (`transformer.onnx.data`): protobuf caps a single file at 2 GB and FLUX.1's
transformer is 24 GB in bf16. The rotary position embedding is exported in float32
(`Float32Rope`): diffusers computes it in float64 except on MPS/NPU, and TensorRT has
no float64, so a graph with it would parse for onnxruntime but not for TensorRT.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_flux import FluxPosEmbed

from pipelines.generative.exported import BATCH, GUIDANCE, OUTPUT, input_names

OPSET = 18
ONNX_FILE = "onnx/transformer.onnx"
EXAMPLE_IMAGE_TOKENS = 32
EXAMPLE_TEXT_TOKENS = 12
MAX_TOKENS = 1 << 16
"""Upper bound of the symbolic token axes: Kontext at 2048 px (the largest `max_side`)
feeds 2 x 128^2 = 32,768 image tokens."""


class Float32Rope(FluxPosEmbed):  # type: ignore[misc]
    """FLUX's rotary position embedding (`FluxPosEmbed`) computed in float32, as diffusers
    does on MPS and NPU: ids (tokens, 3) -> (cos, sin), each (tokens, sum(axes_dim))."""

    # diffusers annotates FluxPosEmbed.forward as returning one tensor; it returns two.
    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        pos = ids.float()
        pairs = [
            get_1d_rotary_pos_embed(
                dim,
                pos[:, axis],  # type: ignore[arg-type]  # annotated ndarray | int; takes tensors
                theta=self.theta,
                repeat_interleave_real=True,
                use_real=True,
                freqs_dtype=torch.float32,
            )
            for axis, dim in enumerate(self.axes_dim)
        ]
        cos = torch.cat([c for c, _ in pairs], dim=-1)
        sin = torch.cat([s for _, s in pairs], dim=-1)
        return cos, sin


class _KeywordForward(torch.nn.Module):
    """The transformer with exactly the exported inputs as arguments, returning a tensor."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor,
        timestep: torch.Tensor,
        img_ids: torch.Tensor,
        txt_ids: torch.Tensor,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.transformer(
            hidden_states=hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            pooled_projections=pooled_projections,
            timestep=timestep,
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=guidance,
            return_dict=False,
        )
        sample: torch.Tensor = out[0]
        return sample


def example_inputs(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inputs of the shapes the exporter traces with (random values, float32)."""
    gen = torch.Generator().manual_seed(0)
    image, text = EXAMPLE_IMAGE_TOKENS, EXAMPLE_TEXT_TOKENS
    inputs = {
        "hidden_states": torch.randn(BATCH, image, config["in_channels"], generator=gen),
        "encoder_hidden_states": torch.randn(
            BATCH, text, config["joint_attention_dim"], generator=gen
        ),
        "pooled_projections": torch.randn(BATCH, config["pooled_projection_dim"], generator=gen),
        "timestep": torch.tensor([0.5]),
        "img_ids": torch.randint(0, 8, (image, 3), generator=gen).float(),
        "txt_ids": torch.zeros(text, 3),
        GUIDANCE: torch.tensor([2.5]),
    }
    return {name: inputs[name] for name in input_names(config)}


def dynamic_shapes(names: list[str]) -> dict[str, Any]:
    """Symbolic image-token and text-token axes; everything else static."""
    image = torch.export.Dim("image_tokens", min=1, max=MAX_TOKENS)
    text = torch.export.Dim("text_tokens", min=1, max=MAX_TOKENS)
    axes: dict[str, Any] = {
        "hidden_states": {1: image},
        "encoder_hidden_states": {1: text},
        "img_ids": {0: image},
        "txt_ids": {0: text},
    }
    return {name: axes.get(name) for name in names}


@torch.no_grad()
def export_transformer(transformer: Any, out: Path) -> list[Path]:
    """Write `transformer` (a float32 `FluxTransformer2DModel`) as ONNX to `out`.

    Returns the files written: the graph `out` and its weights `out` + ".data".
    `transformer.pos_embed` is swapped for `Float32Rope` while it exports.
    Takes 15-20 s for the tiny test model on one core. A full-size FLUX.1 transformer
    (12 B parameters) should need its fp32 weights in host memory about twice over,
    ~100 GB (an estimate; not run on this project's machines).

    Raises:
        torch.onnx.errors.OnnxExporterError: the exporter failed.
    """
    config = dict(transformer.config)
    names = input_names(config)
    rope = transformer.pos_embed
    transformer.pos_embed = Float32Rope(rope.theta, rope.axes_dim)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _export(_KeywordForward(transformer.eval().float()).eval(), config, names, out)
    finally:
        transformer.pos_embed = rope
    return [p for p in (out, out.with_name(out.name + ".data")) if p.exists()]


def _export(module: torch.nn.Module, config: dict[str, Any], names: list[str], out: Path) -> None:
    with warnings.catch_warnings():
        # The exporter warns that the two token axes share their bounds; that is intended.
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            module,
            (),
            str(out),
            kwargs=example_inputs(config),
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            output_names=[OUTPUT],
            dynamic_shapes=dynamic_shapes(names),
            external_data=True,
            # onnxruntime and TensorRT fold and fuse the graph when they load it; the
            # exporter's own optimizer took 2/3 of the export time (tiny model: 29 s vs
            # 8.5 s) and left onnxruntime's speed unchanged (210 vs 170 ms a call at 2048
            # image tokens, within noise on the shared machine).
            optimize=False,
            verbose=False,
        )
