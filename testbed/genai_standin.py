"""A LOCAL STAND-IN for the Gemini API, for tests and benchmarks. It is not Google's service.

It speaks the HTTP shape `google-genai` uses for `models.generate_content` (POST
`/<version>/models/<model>:generateContent`, JSON with `contents[].parts[]` of `text` and
`inlineData`, the key in `x-goog-api-key`) and answers like the Gemini API does, success
and errors alike. Its "edit" is no model: it returns the input image with its colours
inverted, so a test can tell the answer came from the image it sent.

Markers in the prompt choose an answer, so jobs running side by side each get their own:

    [standin:quota]            429 RESOURCE_EXHAUSTED with a RetryInfo of `retry_delay_s`
    [standin:quota-once]       that 429 for the first request with this prompt, then success
    [standin:unavailable-once] 503 UNAVAILABLE once, then success
    [standin:safety]           200 with promptFeedback.blockReason SAFETY and no candidate
    [standin:image-safety]     200 whose candidate finished with IMAGE_SAFETY and no image
    [standin:text]             200 with a text part only (the model declined in words)
    [standin:slow]             success after `slow_s` (longer than a client's timeout)

Every success also waits `latency_s` (0 by default): a provider's render time, for benchmarks.

A wrong API key gets the 400 INVALID_ARGUMENT / API_KEY_INVALID the real API sends.
Bound to 127.0.0.1 on a free port, served from a thread; `stop()` shuts it down cleanly.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageOps

PATH = re.compile(r"^/(?P<version>v1[a-z0-9]*)/models/(?P<model>[A-Za-z0-9._-]+):generateContent$")
IMAGE_TOKENS = 1290  # what the real API counts per output image of Gemini 2.5 Flash Image
INPUT_IMAGE_TOKENS = 258  # per input image up to 384 px a side (larger ones count tiles)


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received: what left the calling machine."""

    model: str
    api_key: str
    prompt: str
    images: int
    image_bytes: int
    mime_types: tuple[str, ...] = ()


@dataclass
class GeminiStandIn:
    """The server and what it saw. `url` is the `base_url` to give the client."""

    api_key: str = "standin-key"
    retry_delay_s: float = 1.0
    slow_s: float = 5.0
    latency_s: float = 0.0
    """Added to every successful answer: the provider's render time, for benchmarks."""
    seen: list[Seen] = field(default_factory=list)
    served_s: list[float] = field(default_factory=list)
    """Seconds the stand-in itself spent on each answer (its "render"), network excluded."""
    _counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() it first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GeminiStandIn:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def answer(self, path: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one request."""
        match = PATH.match(path)
        if match is None:
            return 404, _error(404, "NOT_FOUND", f"no such method: {path}")
        started = time.perf_counter()
        prompt, images, mimes = _read_parts(body)
        seen = Seen(match["model"], key, prompt, len(images), sum(map(len, images)), mimes)
        with self._lock:
            self.seen.append(seen)
            self._counts[prompt] += 1
            count = self._counts[prompt]
        if key != self.api_key:
            return 400, _error(400, "INVALID_ARGUMENT", "API key not valid.", "API_KEY_INVALID")
        reply = self._scripted(prompt, count, images, match["model"])
        with self._lock:
            self.served_s.append(time.perf_counter() - started)
        return reply

    def _scripted(
        self, prompt: str, count: int, images: list[bytes], model: str
    ) -> tuple[int, dict[str, Any]]:
        if "[standin:quota]" in prompt or ("[standin:quota-once]" in prompt and count == 1):
            retry = {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{self.retry_delay_s:g}s",
            }
            return 429, _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", details=(retry,))
        if "[standin:unavailable-once]" in prompt and count == 1:
            return 503, _error(503, "UNAVAILABLE", "The model is overloaded.")
        if "[standin:safety]" in prompt:
            return 200, {"promptFeedback": {"blockReason": "SAFETY"}, **_usage(prompt, images, 0)}
        if "[standin:image-safety]" in prompt:
            candidate = {"finishReason": "IMAGE_SAFETY", "index": 0}
            return 200, {"candidates": [candidate], **_usage(prompt, images, 0)}
        if "[standin:text]" in prompt:
            parts = [{"text": "I can't make that edit."}]
            candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
            return 200, {"candidates": [candidate], **_usage(prompt, images, 8)}
        if "[standin:slow]" in prompt:
            time.sleep(self.slow_s)
        if not images:
            return 400, _error(400, "INVALID_ARGUMENT", "An image edit needs an input image.")
        time.sleep(self.latency_s)
        return 200, _edited(images[0], prompt, images, model)


def _error(
    code: int,
    status: str,
    message: str,
    reason: str | None = None,
    details: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    extra = (
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}] if reason else []
    )
    return {
        "error": {"code": code, "message": message, "status": status, "details": [*details, *extra]}
    }


def _read_parts(body: dict[str, Any]) -> tuple[str, list[bytes], tuple[str, ...]]:
    texts, images, mimes = [], [], []
    for content in body.get("contents", []):
        for part in content.get("parts", []):
            if "text" in part:
                texts.append(part["text"])
            inline = part.get("inlineData") or part.get("inline_data")
            if inline:
                images.append(_b64(inline["data"]))
                mimes.append(str(inline.get("mimeType") or inline.get("mime_type")))
    return " ".join(texts), images, tuple(mimes)


def _b64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not: the API takes either."""
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def _usage(prompt: str, images: list[bytes], output: int) -> dict[str, Any]:
    prompt_tokens = len(prompt.split()) + INPUT_IMAGE_TOKENS * len(images)
    return {
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt_tokens + output,
        }
    }


def _edited(first: bytes, prompt: str, images: list[bytes], model: str) -> dict[str, Any]:
    with Image.open(io.BytesIO(first)) as source:
        inverted = ImageOps.invert(source.convert("RGB"))
    buffer = io.BytesIO()
    inverted.save(buffer, format="PNG", compress_level=1)
    part = {
        "inlineData": {
            "mimeType": "image/png",
            "data": base64.b64encode(buffer.getvalue()).decode(),
        }
    }
    candidate = {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
    return {
        "candidates": [candidate],
        "modelVersion": model,
        **_usage(prompt, images, IMAGE_TOKENS),
    }


def _handler(standin: GeminiStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                status, answer = 400, _error(400, "INVALID_ARGUMENT", "Invalid JSON payload.")
            else:
                key = self.headers.get("x-goog-api-key", "")
                status, answer = standin.answer(self.path.split("?", 1)[0], key, body)
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


def start_standin(**options: Any) -> GeminiStandIn:
    """A started stand-in; call `stop()` when done."""
    return GeminiStandIn(**options).start()
