"""Classic ops: CPU image processing (OpenCV / Pillow) in `pipelines.classic`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from jobs.ops.base import CPU, OpSpec, Params, register


class ResizeParams(Params):
    width: int | None = Field(None, ge=1, le=16384)
    height: int | None = Field(None, ge=1, le=16384)
    max_side: int | None = Field(
        None, ge=1, le=16384, description="longest side at most this; keeps aspect, never upscales"
    )
    fit: Literal["contain", "cover", "stretch"] = Field(
        "contain",
        description="with width and height: fit inside the box, fill it and centre-crop, "
        "or stretch to it",
    )

    @model_validator(mode="after")
    def _one_target(self) -> ResizeParams:
        if self.width is None and self.height is None and self.max_side is None:
            raise ValueError("give width, height or max_side")
        if self.max_side is not None and (self.width is not None or self.height is not None):
            raise ValueError("max_side excludes width and height")
        if self.fit != "contain" and (self.width is None or self.height is None):
            raise ValueError(f"fit={self.fit} needs both width and height")
        return self


_ASPECT = re.compile(r"^\d{1,4}:\d{1,4}$")


class CropParams(Params):
    left: int | None = Field(None, ge=0)
    top: int | None = Field(None, ge=0)
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    aspect: str | None = Field(None, description="centre crop to W:H, e.g. '4:5'")

    @model_validator(mode="after")
    def _box_or_aspect(self) -> CropParams:
        box = (self.left, self.top, self.width, self.height)
        if self.aspect is not None:
            if any(v is not None for v in box):
                raise ValueError("aspect excludes left/top/width/height")
            if not _ASPECT.match(self.aspect) or "0" in self.aspect.split(":"):
                raise ValueError("aspect must look like '4:5'")
        elif any(v is None for v in box):
            raise ValueError("give left, top, width and height, or aspect")
        return self


class ConvertParams(Params):
    mode: Literal["rgb", "gray", "rgba"] = "rgb"
    background: str = Field(
        "#ffffff",
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="colour transparent pixels are laid on when alpha is dropped",
    )


class AutoLevelsParams(Params):
    clip_percent: float = Field(0.5, ge=0.0, le=10.0, description="tail clipped per end")
    per_channel: bool = False


class WhiteBalanceParams(Params):
    method: Literal["shades_of_gray", "gray_world", "white_patch"] = Field(
        "shades_of_gray",
        description="what is taken to be neutral: the scene's 6-norm average (robust), "
        "its plain average, or its brightest unclipped pixels",
    )
    strength: float = Field(1.0, ge=0.0, le=1.0)


class ExposureParams(Params):
    ev: float = Field(..., ge=-4.0, le=4.0, description="stops; +1 doubles linear light")


class DenoiseParams(Params):
    strength: float = Field(
        7.0, ge=1.0, le=30.0, description="filter strength h, about 0.7x the noise sigma in levels"
    )


class SharpenParams(Params):
    amount: float = Field(1.0, ge=0.0, le=5.0, description="share of the detail added back")
    radius: float = Field(1.5, ge=0.3, le=10.0, description="blur sigma in pixels")
    threshold: int = Field(0, ge=0, le=255, description="smaller differences (levels) are kept")


class DustScratchParams(Params):
    sensitivity: float = Field(
        0.5, ge=0.0, le=1.0, description="0 repairs only stark marks; 1 also faint ones"
    )
    max_defect_px: int = Field(
        5, ge=1, le=64, description="widest defect to repair, in pixels (scale with the scan)"
    )


class RestoreFadedParams(Params):
    strength: float = Field(1.0, ge=0.0, le=1.0, description="0 no change, 1 full restoration")


for _spec in (
    OpSpec("resize", ResizeParams, CPU, "scale to a width, height or longest side"),
    OpSpec("crop", CropParams, CPU, "cut a box, or centre-crop to an aspect ratio"),
    OpSpec("convert", ConvertParams, CPU, "change colour mode (rgb, gray, rgba)"),
    OpSpec("auto_levels", AutoLevelsParams, CPU, "stretch tones to the full range"),
    OpSpec("white_balance", WhiteBalanceParams, CPU, "neutralise a colour cast"),
    OpSpec("exposure", ExposureParams, CPU, "brighten or darken by EV stops"),
    OpSpec("denoise", DenoiseParams, CPU, "non-local-means noise reduction"),
    OpSpec("sharpen", SharpenParams, CPU, "unsharp mask"),
    OpSpec("dust_scratch_removal", DustScratchParams, CPU, "find and inpaint dust and scratches"),
    OpSpec("restore_faded_color", RestoreFadedParams, CPU, "bring back faded colour and contrast"),
):
    register(_spec)
