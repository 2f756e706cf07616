"""Reading a job request: JSON, or multipart with the image uploaded; and `wait`.

`POST /v1/jobs` takes either body, so it parses by hand (the OpenAPI document still
describes both, see `producer.api.openapi`):

- `application/json`: a `JobRequest` (`input` names the image, or `image_base64`
  carries a small one; `extra_inputs` lists further images the same two ways);
- `multipart/form-data`: an `image` file part and a `job` part holding the
  `JobOptions` as JSON (everything but `input`), plus up to `MAX_EXTRA_UPLOADS`
  `extra_image` file parts: further images, in the order sent.

`?wait=preview` holds the request until the job finishes (at most
`options.preview_wait_s`) and makes it a preview unless the body chose a mode;
`?wait=N` or `Prefer: wait=N` (RFC 7240) holds it at most N seconds.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from jobs.schema import Lane
from producer.api.context import ApiOptions
from producer.api.errors import ApiError, summary, validation_details
from producer.api.models import MAX_EXTRA_UPLOADS, ExtraImage, JobOptions, JobRequest

FORM_FIELDS = frozenset({"image", "job", "extra_image"})
MAX_JSON_DEPTH = 32  # deeper bodies are refused before validation (a 500 at ~256 otherwise)
FIELD_MAX_BYTES = 64 * 2**10
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


@dataclass(frozen=True)
class ExtraPart:
    """One extra image as sent: named (`uri`) or uploaded (`data`, with its file name)."""

    uri: str | None = None
    data: bytes | None = None
    filename: str | None = None


@dataclass(frozen=True)
class ParsedJob:
    """A job request, its input named (`input`) or uploaded (`upload`); `extras`: the
    further images (the job's `extra_inputs`), in order."""

    options: JobOptions
    body: dict[str, Any]  # what the idempotency fingerprint is taken over
    input: str | None = None
    upload: bytes | None = None
    filename: str | None = None
    extras: tuple[ExtraPart, ...] = ()


@dataclass(frozen=True)
class Wait:
    seconds: float = 0.0
    preview: bool = False  # `?wait=preview`: default the mode to preview
    prefer: bool = False  # granted through `Prefer`, so answer `Preference-Applied`


def wait_of(query: str | None, prefer: str | None, options: ApiOptions) -> Wait:
    if query is not None:
        if query == "preview":
            return Wait(options.preview_wait_s, preview=True)
        try:
            seconds = float(query)
        except ValueError:
            raise ApiError(422, "wait must be 'preview' or a number of seconds") from None
        if not 0 <= seconds <= options.max_wait_s:
            raise ApiError(422, f"wait must be between 0 and {options.max_wait_s:g} seconds")
        return Wait(seconds)
    match = _PREFER_WAIT.search(prefer or "")
    if match:
        return Wait(min(float(match[1]), options.max_wait_s), prefer=True)
    return Wait()


def _validated(model: type[JobOptions], data: Any) -> JobOptions:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ApiError(422, summary(details), details=details) from None


def loads(raw: bytes | str, what: str) -> Any:
    """JSON without NaN or Infinity (JSON has neither; Python's parser allows them)."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    try:
        data = json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, f"{what} is not valid JSON: {exc}") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ApiError(422, f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return data


def json_depth(data: Any) -> int:
    """How deeply arrays and objects nest in parsed JSON (a scalar is 0); iterative, so
    no depth can overflow the stack."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node)
    return deepest


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M]) -> M:
    """A JSON body as `model`, read only now: routes call this after the key is checked,
    so an unauthenticated caller never gets a body parsed."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"send application/json, not {media or 'no content type'}")
    data = loads(await request.body(), "the body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ApiError(422, summary(details), details=details) from None


async def read_job(request: Request, wait: Wait) -> ParsedJob:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        parsed = _from_json(await request.body())
    elif media == "multipart/form-data":
        parsed = await _from_form(request)
    else:
        raise ApiError(
            415,
            f"send application/json or multipart/form-data, not {media or 'no content type'}",
        )
    if wait.preview and "mode" not in parsed.options.model_fields_set:
        options = parsed.options.model_copy(update={"mode": Lane.PREVIEW})
        parsed = dataclasses.replace(parsed, options=options)
    return parsed


def _from_json(raw: bytes) -> ParsedJob:
    data = loads(raw, "the body")
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    request = _validated(JobRequest, data)
    assert isinstance(request, JobRequest)
    exclude = {"input", "image_base64", "extra_inputs"}
    options = JobOptions.model_validate(request.model_dump(exclude=exclude, exclude_unset=True))
    extras = tuple(_extra(item, n) for n, item in enumerate(request.extra_inputs, start=1))
    if request.image_base64 is None:
        body = request.model_dump(mode="json")
        return ParsedJob(options, body, input=request.input, extras=extras)
    image = _decoded(request.image_base64, "image_base64")
    body = request.model_dump(mode="json", exclude={"image_base64"})
    return ParsedJob(options, body, upload=image, extras=extras)


def _decoded(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{what} is not valid base64", code="input_invalid") from None


def _extra(item: str | ExtraImage, number: int) -> ExtraPart:
    """Extra input `number` (from 1) of a JSON body: a URI, or an inline image."""
    if isinstance(item, str):
        return ExtraPart(uri=item)
    if item.input is not None:
        return ExtraPart(uri=item.input)
    assert item.image_base64 is not None
    return ExtraPart(data=_decoded(item.image_base64, f"extra input {number}: image_base64"))


async def _from_form(request: Request) -> ParsedJob:
    try:
        form = await request.form(
            max_files=1 + MAX_EXTRA_UPLOADS,
            max_fields=len(FORM_FIELDS),
            max_part_size=FIELD_MAX_BYTES,
        )
    except HTTPException as exc:
        if "Too many files" not in str(exc.detail):
            raise
        raise ApiError(
            422, f"send one `image` part and at most {MAX_EXTRA_UPLOADS} `extra_image` parts"
        ) from None
    unknown = sorted(set(form.keys()) - FORM_FIELDS)
    if unknown:
        raise ApiError(
            422,
            f"unknown form field(s) {', '.join(unknown)}; send `image`, `job` and optionally "
            "`extra_image` parts",
        )
    if len(form.getlist("image")) > 1:
        raise ApiError(422, "send one `image` part; further images go in `extra_image` parts")
    image, job = form.get("image"), form.get("job")
    if not isinstance(image, UploadFile):
        raise ApiError(422, "multipart requests need an `image` file part")
    if not isinstance(job, str):
        raise ApiError(422, "multipart requests need a `job` part: the job options as JSON")
    data = loads(job, "the `job` part")
    if not isinstance(data, dict):
        raise ApiError(422, "the `job` part must be a JSON object")
    options = _validated(JobOptions, data)
    upload = await image.read()
    extras = []
    for number, part in enumerate(form.getlist("extra_image"), start=1):
        if not isinstance(part, UploadFile):
            raise ApiError(422, f"`extra_image` part {number} must be a file, not a form field")
        extras.append(ExtraPart(data=await part.read(), filename=part.filename))
    return ParsedJob(
        options,
        options.model_dump(mode="json"),
        upload=upload,
        filename=image.filename,
        extras=tuple(extras),
    )
