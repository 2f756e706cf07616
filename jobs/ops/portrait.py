"""Portrait ops: face analysis, face-aware skin smoothing and background removal,
implemented in `pipelines.portrait` (OpenCV on the CPU; no GPU needed)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from jobs.ops.base import CPU, OpSpec, Params, register

_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class DetectFacesParams(Params):
    all_faces: bool = Field(False, description="every face, largest first; else the largest")
    min_score: float = Field(0.7, ge=0.3, le=1.0, description="detector confidence to accept")
    annotate: bool = Field(False, description="draw boxes and keypoints on the output")


class SkinSmoothParams(Params):
    strength: float = Field(0.5, ge=0.0, le=1.0, description="0 keeps the skin as it is")
    all_faces: bool = Field(True, description="smooth every face, not only the largest")
    require_face: bool = Field(
        True,
        description="fail with face_not_found when no face is seen; "
        "false passes such images through unchanged",
    )


class RemoveBackgroundParams(Params):
    method: Literal["auto", "selfie", "grabcut"] = Field(
        "auto",
        description="selfie: the published person-segmentation model; grabcut: classical, "
        "seeded by the face; auto: selfie when published, else grabcut",
    )
    background: Literal["transparent", "color", "image"] = Field(
        "transparent",
        description="transparent: RGBA output; color: fill with `color`; "
        "image: the job's first extra input, scaled to cover",
    )
    color: str = Field("#ffffff", description="fill for background=color, as #rrggbb")
    feather_px: float = Field(2.0, ge=0.0, le=50.0, description="softness of the edge")

    @field_validator("color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX_COLOR.match(value):
            raise ValueError("color must look like '#1a2b3c'")
        return value.lower()

    @model_validator(mode="after")
    def _color_only_for_color(self) -> RemoveBackgroundParams:
        if self.background != "color" and "color" in self.model_fields_set:
            raise ValueError("color is used only with background='color'")
        return self


for _spec in (
    OpSpec(
        "detect_faces",
        DetectFacesParams,
        CPU,
        "find faces with 5 keypoints; records them in the job result",
        family="portrait",
    ),
    OpSpec(
        "skin_smooth",
        SkinSmoothParams,
        CPU,
        "smooth skin on faces, keeping eyes, brows, lips and hair sharp",
        family="portrait",
    ),
    OpSpec(
        "remove_background",
        RemoveBackgroundParams,
        CPU,
        "cut the person out: transparent, a colour, or another image behind",
        family="portrait",
        extra_inputs=1,
        extra_role="the replacement background, with background='image'",
        extra_inputs_for=lambda params: int(params.background == "image"),
    ),
):
    register(_spec)
