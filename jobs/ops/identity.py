"""Identity-preserving portraits in the InstantID design, in `pipelines.identity`.

A new image of the person in the job's photos: SDXL steered by IdentityNet (a
ControlNet fed the face's 5 keypoints and its identity tokens) and by a face adapter
(IP-Adapter decoupled cross-attention on an ArcFace embedding). The job's input and
extra inputs are reference photos of one person; several references are averaged.

After a final render an independent recogniser (SFace) compares the portrait's face
with the references. Below `min_identity` the portrait is re-rendered with a new seed,
up to `max_rerenders` times. If no attempt passes, `on_mismatch` decides:

- `fail` (default): the job fails, so a wrong face is never delivered as a success.
  The code is `face_not_found` when no attempt showed a face at all, otherwise
  `input_invalid` (the references or params did not yield this person: send a
  sharper frontal photo, raise identity_strength, or lower min_identity). The
  message lists every attempt's score and seed.
- `best`: the job succeeds with the closest attempt and `identity_passed: false`.

Every attempt's seed and score is in the job result either way (on success).
Previews render once, without the gate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jobs.ops.base import MAX_EXTRA_INPUTS, Needs, OpSpec, register
from jobs.ops.generative import MODEL_REF, GenerativeParams

SAME_PERSON = 0.363
"""SFace cosine similarity at or above which two faces are the same person (OpenCV's
published threshold; `pipelines.faces.SAME_PERSON` is the same number)."""
MAX_ASPECT = 4.0
"""The most elongated portrait SDXL renders well (its training buckets span 1:4..4:1)."""


class IdentityPortraitParams(GenerativeParams):
    """An identity-preserving portrait: prompt and style from the params, face from the
    job's photos, pose from the reference or from a pose photo."""

    model: str = Field("instantid-sdxl@stable", pattern=MODEL_REF)
    negative_prompt: str | None = Field(None, max_length=2000, description="what to avoid")
    steps: int = Field(30, ge=1, le=100)
    guidance: float = Field(5.0, ge=0.0, le=50.0)
    max_side: int = Field(
        1024,
        ge=64,
        le=2048,
        description="longest side of the portrait, whatever the photos' sizes; "
        "its aspect ratio is the pose photo's",
    )
    identity_strength: float = Field(
        0.8, ge=0.0, le=1.5, description="face adapter scale: how strongly the face is kept"
    )
    control_strength: float = Field(
        0.8,
        ge=0.0,
        le=1.5,
        description="IdentityNet conditioning scale: how strongly keypoints and identity steer",
    )
    pose: Literal["reference", "image"] = Field(
        "reference",
        description="reference: pose and framing of the input photo; image: of the job's "
        "last extra input (a pose photo, not used as a reference)",
    )
    min_identity: float = Field(
        SAME_PERSON,
        ge=0.0,
        le=1.0,
        description="SFace similarity a final portrait must reach; 0 accepts any render",
    )
    max_rerenders: int = Field(
        2, ge=0, le=5, description="new-seed renders after a final fails the identity check"
    )
    on_mismatch: Literal["fail", "best"] = Field(
        "fail",
        description="when no render passes: fail the job, or return the closest render "
        "with identity_passed: false",
    )


# SDXL UNet + IdentityNet + adapter + text encoders resident, activations at ~1 MP. The
# UNet stays 16-bit: the face adapter cannot be loaded into a quantized one.
IDENTITY_NEEDS = Needs(cpu=False, vram_gb={"fp16": 14, "bf16": 14})

register(
    OpSpec(
        "identity_portrait",
        IdentityPortraitParams,
        IDENTITY_NEEDS,
        "a new portrait of the person in the photos (InstantID on SDXL), identity-checked",
        family="identity",
        extra_inputs=MAX_EXTRA_INPUTS,
        extra_role="more reference photos of the person, then a pose photo with pose='image'",
    )
)
