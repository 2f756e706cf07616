"""AI super-resolution (`upscale`), implemented in `pipelines.upscale`.

The models are idealo ISR networks trained on DIV2K, published from the UpscalerJS npm
packages as `esrgan-<model>-x<scale>` (`darkroom models import-upscalerjs`). The op runs
on the cpu tier and on every GPU tier (each tier runs the variant its manifest names).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jobs.ops.base import CPU, OpSpec, Params, register

MAX_OUTPUT_PIXELS = 8192 * 8192
"""Largest result (67 MP). Tiles keep memory flat (a 4096^2 result peaks under 1.5 GB,
README); the bound is time: thick x4 on two CPU cores runs ~80 s per input MP."""

UpscaleModel = Literal["thick", "medium", "slim"]


def model_name(model: str, scale: int) -> str:
    """The model-store name of `model` at `scale`, e.g. `esrgan-thick-x4`."""
    return f"esrgan-{model}-x{scale}"


class UpscaleParams(Params):
    scale: Literal[2, 3, 4, 8] = Field(4, description="how many times larger, per side")
    model: UpscaleModel = Field(
        "thick",
        description="thick: RRDN (7.3 M params, best); medium / slim: small RDNs, fast, "
        "about bicubic quality",
    )
    tile: int = Field(
        128, ge=0, le=1024, description="input pixels per tile side; 0: the whole image at once"
    )
    overlap: int = Field(
        16, ge=0, le=128, description="input pixels of context around each tile (seams at 0)"
    )

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> UpscaleParams:
        if self.tile and self.overlap >= self.tile:
            raise ValueError("overlap must be smaller than tile")
        return self

    @property
    def model_ref(self) -> str:
        return model_name(self.model, self.scale)


register(
    OpSpec(
        "upscale",
        UpscaleParams,
        CPU,
        "AI super-resolution x2/x3/x4/x8 (ISR RRDN/RDN, DIV2K), tiled; alpha kept",
        family="upscale",
    )
)
