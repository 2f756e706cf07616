"""The job schema: Job, Recipe, Step and OutputSpec. JSON only, versioned.

Unknown fields are ignored on decode, so a worker still reads messages written by
a newer producer; every new field is optional with a default, so a newer worker
reads messages already queued.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jobs.errors import SchemaError
from jobs.ops.base import Params, get_op
from jobs.ops.hosted import HOSTED

SCHEMA_VERSION = 1
INPUT_SCHEMES = ("file://", "s3://", "https://")
MAX_STEPS = 32


class Lane(StrEnum):
    PREVIEW = "preview"
    FINAL = "final"


class Step(BaseModel):
    """One op and its params, checked against the catalogue when built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `{denoise: {strength: 6}}` in a recipe file means `{op: denoise, params: {...}}`.
        if isinstance(data, dict) and len(data) == 1 and "op" not in data:
            ((op, params),) = data.items()
            return {"op": op, "params": params or {}}
        return data

    @model_validator(mode="after")
    def _check_params(self) -> Step:
        get_op(self.op).validate(self.params)
        return self

    def typed_params(self) -> Params:
        return get_op(self.op).validate(self.params)


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, max_length=100)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    def digest(self) -> str:
        """A stable hash of what the recipe does (not its name)."""
        body = json.dumps([s.model_dump() for s in self.steps], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def model_refs(recipe: Recipe) -> list[str]:
    """The model-store refs a worker loads into its resident cache to run `recipe`, as the
    steps name them (`kontext@stable`, `esrgan-thick-x4`), in step order, each once.

    A step's ref is its params' `model_ref`, else its `model`; hosted ops name a
    provider's model, not one of ours, and classic ops load none. (An upscale preview
    runs the slim model instead: `pipelines.upscale`.)
    """
    refs: list[str] = []
    for step in recipe.steps:
        if get_op(step.op).family == HOSTED:
            continue
        params = step.typed_params()
        ref = getattr(params, "model_ref", None) or getattr(params, "model", None)
        if isinstance(ref, str) and ref not in refs:
            refs.append(ref)
    return refs


class OutputSpec(BaseModel):
    """Where and how the result is written."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["webp", "jpeg", "png", "tiff"] = "webp"
    quality: int = Field(90, ge=1, le=100)
    lossless: bool = False
    uri: str | None = Field(
        None, description="destination folder: file:///dir/ or s3://bucket/prefix/"
    )
    key: str | None = Field(
        None, max_length=512, description="file name under uri, without extension"
    )
    keep_steps: bool = Field(False, description="also write each step's result")
    # Added later: None means the default, and a None field is left out of job ids,
    # so batches submitted before these existed resume onto the same jobs.
    metadata: Literal["keep", "strip"] | None = Field(
        None,
        description="keep (default): EXIF (orientation reset), XMP, IPTC copyright, dpi and "
        "the colour profile; strip: only the colour profile (no GPS, camera, dates)",
    )
    bit_depth: Literal[8, 16] | None = Field(
        None, description="PNG/TIFF bits per sample; None: 16 when the input had 16"
    )
    frames: Literal["all", "first"] | None = Field(
        None,
        description="all (default): every page or animation frame; first: only the first "
        "(what generative ops need for animated or multi-page inputs)",
    )

    @field_validator("key")
    @classmethod
    def _safe_key(cls, key: str | None) -> str | None:
        if key is not None and (key.startswith("/") or ".." in key.split("/") or "\\" in key):
            raise ValueError("key must be a relative path without '..'")
        return key

    @property
    def extension(self) -> str:
        return {"jpeg": "jpg", "tiff": "tif"}.get(self.format, self.format)


def new_job_id() -> str:
    return uuid.uuid4().hex


class Job(BaseModel):
    """One edit of one image: input, recipe, lane and output."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_version: int = Field(SCHEMA_VERSION, alias="schema", ge=1)
    id: str = Field(default_factory=new_job_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    input: str = Field(max_length=4096)
    extra_inputs: list[str] = Field(default_factory=list, max_length=8)
    recipe: Recipe
    mode: Lane = Lane.FINAL
    priority: int = Field(5, ge=0, le=9, description="0 runs first")
    output: OutputSpec = Field(default_factory=OutputSpec)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    webhook: str | None = None
    idempotency_key: str | None = Field(None, max_length=200)
    batch: str | None = Field(None, max_length=200)
    tenant: str | None = Field(None, max_length=100)
    created_at: float = Field(default_factory=time.time)
    cancel_after: float | None = Field(None, description="epoch seconds; not started by then")

    @field_validator("input", "extra_inputs")
    @classmethod
    def _known_scheme(cls, value: str | list[str]) -> str | list[str]:
        for uri in [value] if isinstance(value, str) else value:
            if not uri.startswith(INPUT_SCHEMES):
                raise ValueError(f"input must start with one of {', '.join(INPUT_SCHEMES)}")
        return value

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_defaults=False)

    @classmethod
    def from_json(cls, data: str | bytes | dict[str, Any]) -> Job:
        """Decode a job; any failure is one `SchemaError` with a readable message.

        Raises:
            SchemaError: `data` is not JSON or not a valid job.
        """
        try:
            if isinstance(data, dict):
                return cls.model_validate(data)
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SchemaError(_describe(exc)) from None
        except SchemaError:
            raise
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"job does not decode: {exc}") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'job'}: {err['msg']}" for err in exc.errors()
    )
