"""Multi-identity customization in the UMO design, in `pipelines.multi_identity`.

The op is named after its task as the field names it: "multi-identity customization"
(UMO, Cheng et al. 2025, arXiv:2509.06818): a prompt plus one reference photo per
person (the job's input, then its extra inputs; 1-4 people) gives one new image
showing every one of them. The generator is UNO's (Wu et al. 2025, arXiv:2504.02160):
FLUX.1-dev reading each reference as extra latent tokens at its own rotary offset,
with UNO's (or UMO's) LoRA adapters linked by the model's manifest.

After a final render the multi-face identity gate detects every face, pairs faces
with references by the assignment that maximises SFace similarity, and accepts the
render only when every reference has its own face at or above `min_identity`.
Otherwise it re-renders with a new seed, up to `max_rerenders` times; every attempt's
similarity matrix and assignment is in the job result. `on_mismatch` says how a gate
that never passes ends (`fail`: `input_invalid`, or `face_not_found` when no render
showed a face; `best`: the closest render, `identity_passed: false`). Previews render
once, without the gate. A reference photo with no face fails the job at once with
`face_not_found`, naming the photo.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jobs.ops.base import Needs, OpSpec, register
from jobs.ops.generative import MODEL_REF, GenerativeParams
from jobs.ops.identity import SAME_PERSON

MAX_PEOPLE = 4
"""UMO's UNO demo takes up to four reference identities (and warns that UNO grows
unstable beyond two)."""
ASPECT_RATIO = r"^[1-9][0-9]?:[1-9][0-9]?$"
MAX_ASPECT = 4.0


class MultiIdentityParams(GenerativeParams):
    """A new image of 1-4 people: the scene from the prompt, each face from its photo."""

    model: str = Field("umo-uno@stable", pattern=MODEL_REF)
    steps: int = Field(25, ge=1, le=100)
    guidance: float = Field(
        4.0, ge=0.0, le=50.0, description="FLUX.1-dev distilled guidance (UNO's default 4)"
    )
    max_side: int = Field(
        768, ge=64, le=2048, description="longest side of the image (UMO: 768-1024 work best)"
    )
    aspect_ratio: str = Field(
        "1:1", pattern=ASPECT_RATIO, description="width:height of the image, up to 4:1"
    )
    reference_side: int | None = Field(
        None,
        ge=64,
        le=1024,
        description="longest side each aligned face crop is read at; default UNO's: "
        "512 for one person, 320 for several",
    )
    lora_scale: float = Field(
        1.0, ge=0.0, le=2.0, description="scale of the model's LoRA adapters; 0 runs the base"
    )
    min_identity: float = Field(
        SAME_PERSON,
        ge=0.0,
        le=1.0,
        description="SFace similarity each person's face must reach; 0 accepts any render",
    )
    max_rerenders: int = Field(
        2, ge=0, le=5, description="new-seed renders after a final fails the identity gate"
    )
    on_mismatch: Literal["fail", "best"] = Field(
        "fail",
        description="when no render passes: fail the job, or return the closest render "
        "with identity_passed: false",
    )

    @model_validator(mode="after")
    def _aspect_in_range(self) -> MultiIdentityParams:
        self.aspect()
        return self

    def aspect(self) -> float:
        """width / height; raises ValueError beyond MAX_ASPECT."""
        width, height = (int(v) for v in self.aspect_ratio.split(":"))
        ratio = width / height
        if max(ratio, 1 / ratio) > MAX_ASPECT:
            raise ValueError(f"aspect_ratio {self.aspect_ratio} is beyond {MAX_ASPECT:g}:1")
        return ratio


# FLUX.1-dev (12B) + T5-XXL + the LoRA resident; Kontext's figures plus ~2 GB for up to
# four references' tokens at 320 px and the adapters (an estimate, not yet measured).
MULTI_IDENTITY_NEEDS = Needs(cpu=False, vram_gb={"bf16": 36, "fp8": 22, "nf4": 14})

register(
    OpSpec(
        "multi_identity",
        MultiIdentityParams,
        MULTI_IDENTITY_NEEDS,
        "a new image of 1-4 people, one reference photo each (UMO on UNO / FLUX.1-dev), "
        "every face identity-checked",
        family="multi_identity",
        extra_inputs=MAX_PEOPLE - 1,
        extra_role="one reference photo per further person: 1-4 people in all",
    )
)
