"""The API's request and response bodies. Strict: an unknown field is a 422, not ignored.

Requests describe what a tenant may choose; where outputs go, the tenant and the job id
are the server's business. Ops and their params are checked against the catalogue when
the request is turned into a `Recipe` (see `producer.api.submit`), so a bad param gets
the catalogue's own message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobs.ops import CATALOGUE
from jobs.ops.base import MAX_EXTRA_INPUTS
from jobs.schema import MAX_STEPS, Lane

MAX_BATCH_INPUTS = 1000
MAX_EXTRA_UPLOADS = 4
"""`extra_image` parts one multipart request may carry (multi_identity's four people are
the image and three of them); more extra images go by URL in a JSON body."""
URL_MAX = 2048


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepIn(_Strict):
    op: str = Field(json_schema_extra={"enum": list(sorted(CATALOGUE))}, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, description="the op's params")


class RecipeIn(_Strict):
    name: str | None = Field(None, max_length=100)
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)


class OutputIn(_Strict):
    format: Literal["webp", "jpeg", "png", "tiff"] = "webp"
    quality: int = Field(90, ge=1, le=100)
    lossless: bool = False
    metadata: Literal["keep", "strip"] | None = Field(
        None, description="keep (default): EXIF, XMP, IPTC copyright, dpi, ICC; strip: ICC only"
    )
    bit_depth: Literal[8, 16] | None = Field(
        None, description="PNG/TIFF bits per sample; default: 16 when the input had 16"
    )
    frames: Literal["all", "first"] | None = Field(
        None, description="all (default): every page or animation frame; first: the first only"
    )


class JobOptions(_Strict):
    """Everything about a job but its input (a multipart upload sends this as `job`)."""

    recipe: RecipeIn | None = Field(None, description="a recipe; or give `ops`")
    ops: list[StepIn] | None = Field(None, min_length=1, max_length=MAX_STEPS)
    mode: Lane = Field(Lane.FINAL, description="preview: fast draft lane; final: full quality")
    priority: int = Field(5, ge=0, le=9, description="0 runs first")
    output: OutputIn = Field(default_factory=OutputIn)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    webhook: str | None = Field(
        None, max_length=URL_MAX, description="https URL told when the job finishes"
    )
    cancel_after: float | None = Field(
        None, gt=0, le=1e11, allow_inf_nan=False, description="epoch seconds; not started by then"
    )
    spill_preview: bool = Field(
        False, description="a preview may also overflow to the hosted tier (keys with `hosted`)"
    )


class ExtraImage(_Strict):
    """One extra image of a JSON job: by reference (`input`) or inline (`image_base64`)."""

    input: str | None = Field(
        None, min_length=1, max_length=4096, description="https:// URL or s3:// object"
    )
    image_base64: str | None = Field(None, min_length=4, description="the image itself, base64")

    @model_validator(mode="after")
    def _one_image(self) -> ExtraImage:
        if (self.input is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of `input` (a URL) or `image_base64`")
        return self


class JobRequest(JobOptions):
    """A job in JSON: the image by reference (`input`) or inline (`image_base64`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "input": "https://images.example.com/portrait.jpg",
                    "ops": [{"op": "auto_levels"}, {"op": "sharpen", "params": {"amount": 0.8}}],
                    "mode": "preview",
                    "output": {"format": "webp", "quality": 85},
                }
            ]
        }
    )

    input: str | None = Field(
        None, min_length=1, max_length=4096, description="https:// URL or s3:// object"
    )
    image_base64: str | None = Field(
        None,
        min_length=4,
        description="the image itself, base64 (small images; the body cap holds)",
    )

    extra_inputs: list[str | ExtraImage] = Field(
        default_factory=list,
        max_length=MAX_EXTRA_INPUTS,
        description="further images after `input`, for ops that read them (multi_identity: "
        "one photo per further person; qwen_edit: reference images): each an https:// URL "
        "or s3:// object, or {'image_base64': ...}",
    )

    @model_validator(mode="after")
    def _one_image(self) -> JobRequest:
        if (self.input is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of `input` (a URL) or `image_base64`")
        return self


class BatchInput(_Strict):
    input: str = Field(min_length=1, max_length=4096)


class BatchRequest(JobOptions):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        "https://images.example.com/scan-001.jpg",
                        {"input": "https://images.example.com/scan-002.jpg"},
                    ],
                    "recipe": {"name": "restore", "steps": [{"op": "restore_faded_color"}]},
                    "priority": 7,
                }
            ]
        }
    )

    inputs: list[str | BatchInput] = Field(min_length=1, max_length=MAX_BATCH_INPUTS)

    def uris(self) -> list[str]:
        return [i if isinstance(i, str) else i.input for i in self.inputs]


class EditRequest(_Strict):
    """The compatibility route's body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image_url": "https://images.example.com/portrait.jpg",
                    "instructions": "remove background and smooth skin, then sharpen",
                    "size": "1024x1024",
                }
            ]
        },
    )

    image_url: str = Field(min_length=1, max_length=4096)
    instructions: str = Field(min_length=1, max_length=1000)
    size: str | int | None = Field(None, description="longest side ('1024') or '1024x768'")
    mode: Lane = Lane.FINAL
    webhook: str | None = Field(None, max_length=URL_MAX)


# -- responses -------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str
    message: str


class OutputView(BaseModel):
    url: str = Field(description="presigned GET (S3) or this API's /v1/outputs path")
    format: str
    expires_at: float | None = Field(None, description="when a presigned URL stops working")


class InlineImage(BaseModel):
    content_type: Literal["image/webp"] = "image/webp"
    data: str = Field(description="base64 of the image bytes")
    bytes: int


class WebhookView(BaseModel):
    url: str | None = None
    state: str | None = None
    event: str | None = None
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    delivered_at: float | None = None
    next_attempt_at: float | None = None


class JobView(BaseModel):
    id: str
    state: str
    mode: str | None = None
    batch: str | None = None
    progress: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    cancel_after: float | None = None
    error: ErrorInfo | None = None
    output: OutputView | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    timestamps: dict[str, float] = Field(default_factory=dict)
    webhook: WebhookView | None = None
    inline: InlineImage | None = None
    backend: str | None = Field(None, description="who rendered it: local, or the hosted model")
    info: dict[str, Any] = Field(
        default_factory=dict,
        description="what the render recorded, per op (`<op>.<name>`: e.g. the identity gate's "
        "similarity matrices, a hosted call's cost, the variant that ran) and per input "
        "(pages or frames, metadata notes); server paths are never shown",
    )
    pages: list[OutputView] = Field(
        default_factory=list, description="every output file when the job wrote several"
    )


class BatchView(BaseModel):
    id: str
    done: bool
    total: int
    counts: dict[str, int]
    jobs: list[JobView] = Field(default_factory=list)
    next_cursor: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
