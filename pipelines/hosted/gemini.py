"""An instruction edit by Gemini 2.5 Flash Image, through `google-genai`'s `generate_content`.

What leaves the machine: the instruction and the images, as inline JPEG parts (quality
95, no chroma subsampling, longest side at most `MAX_SEND_SIDE`), to the endpoint the
client is built for (Google's, or `base_url`). JPEG rather than PNG: measured on a 512 px
photo, 1 ms and 99 KB against 100-290 ms and 420-470 KB, and a 24 MP photo as PNG is
over the provider's 20 MB inline limit; the model renders about 1 MP whatever it is sent.
The client retries nothing itself (no `retry_options`): darkroom's queue decides, from
the mapped error.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from google import genai
from google.genai import errors, types
from PIL import Image

from jobs.errors import InputTooLarge, JobError, JobTimeout, ModelUnavailable
from pipelines.hosted.answers import PROVIDER, from_status, refusal, retrying


def _exceptions(name: str) -> tuple[type[Exception], ...]:
    """`name` from httpx2 (google-genai 3.x sends through this fork) and httpx, if present."""
    found = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(found)


TIMEOUTS = _exceptions("TimeoutException")
UNREACHABLE = _exceptions("TransportError")
# The Gemini API's limit on a request with inline data (ai.google.dev, "Image understanding").
MAX_INLINE_BYTES = 20 * 2**20
MAX_OUTPUT_PIXELS = 64_000_000  # guards the decoder against a hostile answer
MAX_SEND_SIDE = 2048  # the model renders about 1 MP; more only costs upload time
JPEG_QUALITY = 95


@dataclass(frozen=True)
class HostedEdit:
    """What the provider made: the image (RGB) and what it counts for billing."""

    image: Image.Image
    model_version: str
    input_tokens: int
    output_tokens: int


def _jpeg(image: Image.Image) -> bytes:
    """`image` as sent: RGB, longest side at most `MAX_SEND_SIDE`, JPEG quality 95 4:4:4."""
    rgb = image.convert("RGB")
    if max(rgb.size) > MAX_SEND_SIDE:
        rgb.thumbnail((MAX_SEND_SIDE, MAX_SEND_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


class GeminiImageEditor:
    """Sends (instruction, images) to Gemini's image model and returns the edited image."""

    def __init__(self, client: genai.Client, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    @classmethod
    def connect(cls, api_key: str, base_url: str | None, timeout_s: float) -> GeminiImageEditor:
        """A client for the Gemini API (`base_url` None: Google's endpoint)."""
        options = types.HttpOptions(base_url=base_url, timeout=round(timeout_s * 1000))
        return cls(genai.Client(api_key=api_key, http_options=options), timeout_s)

    def edit(
        self,
        image: Image.Image,
        prompt: str,
        references: Sequence[Image.Image] = (),
        *,
        model: str = "gemini-2.5-flash-image",
        seed: int | None = None,
    ) -> HostedEdit:
        """Edit `image` as `prompt` says; `references` go along as further images.

        Raises:
            InputTooLarge: the images are over the provider's inline request limit
                (eight references at 2048 px can be).
            QuotaExceeded: the provider's quota (retryable, with its delay).
            RefusedByProvider: a safety block, or an answer without an image.
            JobTimeout: no answer within `timeout_s`, or the provider's 504 (retryable).
            ModelUnavailable: credentials refused, unknown model, provider down (5xx and
                network errors are retryable).
            InputInvalid: the provider rejected the request (400).
        """
        # 1. check inputs before anything leaves the machine
        parts = [_jpeg(im) for im in (image, *references)]
        if sum(len(p) for p in parts) > MAX_INLINE_BYTES:
            raise InputTooLarge(
                f"the images are {sum(len(p) for p in parts) / 2**20:.1f} MB as JPEG; "
                f"{PROVIDER} takes at most {MAX_INLINE_BYTES / 2**20:.0f} MB inline"
            )
        contents: list[types.Content] = [
            types.Content(
                role="user",
                parts=[
                    types.Part.from_text(text=prompt),
                    *(types.Part.from_bytes(data=p, mime_type="image/jpeg") for p in parts),
                ],
            )
        ]
        config = types.GenerateContentConfig(response_modalities=["IMAGE"], seed=seed)
        # 2. the call, its failures mapped to job errors
        answer = self._call(model, contents, config)
        # 3. the image in the answer, or why there is none
        return self._image(answer, model)

    def _call(
        self, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        try:
            return self.client.models.generate_content(
                model=model, contents=contents, config=config
            )
        except errors.APIError as exc:
            raise from_status(exc.code, exc.status, exc.message, exc.details) from None
        except TIMEOUTS:
            raise retrying(
                JobTimeout(f"{PROVIDER} did not answer within {self.timeout_s:g} s")
            ) from None
        except UNREACHABLE as exc:
            raise retrying(ModelUnavailable(f"{PROVIDER} unreachable: {exc}")) from None

    def _image(self, answer: types.GenerateContentResponse, model: str) -> HostedEdit:
        usage = answer.usage_metadata
        block = answer.prompt_feedback.block_reason if answer.prompt_feedback else None
        candidate = answer.candidates[0] if answer.candidates else None
        parts = candidate.content.parts if candidate and candidate.content else None
        for part in parts or []:
            if part.inline_data is not None and part.inline_data.data:
                return HostedEdit(
                    image=_decode(part.inline_data.data),
                    model_version=answer.model_version or model,
                    input_tokens=(usage.prompt_token_count or 0) if usage else 0,
                    output_tokens=(usage.candidates_token_count or 0) if usage else 0,
                )
        finish = candidate.finish_reason if candidate else None
        text = " ".join(p.text for p in parts or [] if p.text)
        raise refusal(_name(block), _name(finish), text)


def _name(value: object) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _decode(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > MAX_OUTPUT_PIXELS:
                raise JobError(f"{PROVIDER} answered with a {probe.size} image; too large")
            return probe.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise JobError(f"{PROVIDER} answered with an image that does not decode: {exc}") from None
