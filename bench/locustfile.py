"""Locust users for `bench/load.py`: a SaaS product's previews and final renders.

- `PreviewUser`: `POST /v1/jobs?wait=preview` with a small photo inline; the request
  is held until the preview is rendered and answers 200 with the image. Its response
  time is the preview latency a product's user feels.
- `FinalUser`: `POST /v1/jobs` in final mode; answers 202 at once, rendered later.

Each class runs a fixed number of users, each at a fixed rate (`constant_throughput`),
so the offered load is known. Configured through the environment by `bench/load.py`:
`DARKROOM_LOAD_KEY`, `DARKROOM_LOAD_IMAGE`, `DARKROOM_LOAD_{PREVIEW,FINAL}_USERS` and
`_RATE` (requests per second per user), `DARKROOM_LOAD_OUT` (where every request's
latency is written as JSON when locust quits: locust's own percentiles are rounded).
"""

from __future__ import annotations

import base64
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from locust import HttpUser, constant_throughput, events, task

PREVIEW_OPS = [{"op": "auto_levels"}, {"op": "resize", "params": {"max_side": 256}}]
FINAL_OPS = [
    {"op": "denoise", "params": {"strength": 8}},
    {"op": "auto_levels"},
    {"op": "sharpen", "params": {"amount": 0.6}},
]
_latencies: dict[str, list[float]] = defaultdict(list)
_failures: dict[str, list[str]] = defaultdict(list)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"DARKROOM_LOAD_{name}", default)


def _image() -> str:
    path = _env("IMAGE", "")
    return base64.b64encode(Path(path).read_bytes()).decode() if path else ""


IMAGE_B64 = _image()
HEADERS = {"Authorization": f"Bearer {_env('KEY', '')}"}


class PreviewUser(HttpUser):
    fixed_count = int(_env("PREVIEW_USERS", "1"))
    wait_time = constant_throughput(float(_env("PREVIEW_RATE", "1")))

    @task
    def preview(self) -> None:
        body = {"image_base64": IMAGE_B64, "ops": PREVIEW_OPS, "output": {"quality": 70}}
        with self.client.post(
            "/v1/jobs?wait=preview", json=body, headers=HEADERS, name="preview", catch_response=True
        ) as reply:
            view = _json(reply.text)
            if reply.status_code != 200 or view.get("state") != "succeeded":
                reply.failure(f"{reply.status_code} {view.get('state')}: {reply.text[:200]}")


class FinalUser(HttpUser):
    fixed_count = int(_env("FINAL_USERS", "1"))
    wait_time = constant_throughput(float(_env("FINAL_RATE", "1")))

    @task
    def final(self) -> None:
        body = {"image_base64": IMAGE_B64, "ops": FINAL_OPS, "mode": "final"}
        with self.client.post(
            "/v1/jobs", json=body, headers=HEADERS, name="final", catch_response=True
        ) as reply:
            if reply.status_code != 202:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")


def _json(text: str) -> dict[str, Any]:
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


@events.request.add_listener
def _record(name: str, response_time: float, exception: Exception | None, **_: Any) -> None:
    if exception is None:
        _latencies[name].append(response_time)
    else:
        _failures[name].append(str(exception)[:200])


@events.quitting.add_listener
def _write(**_: Any) -> None:
    out = _env("OUT", "")
    if out:
        Path(out).write_text(json.dumps({"latency_ms": _latencies, "failures": _failures}))
