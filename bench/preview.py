"""One-call preview latency: `POST /v1/jobs?wait=preview`, one request at a time, on an
idle stack (a private Redis, one cpu preview worker, `darkroom api`, all on loopback).

Side by side, per request: what the client waited, and what Redis recorded of the job
(queued -> running: the queue's share; running -> succeeded: the worker's). The rest is
the API's share (upload, validation, enqueue, wake-up, inline encode). Target: the
client's p95 under 200 ms for a cheap op.

`python -m bench.preview [--requests 100] [--side 64]`.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bench.harness import lab, percentile, table
from producer.api_keys import KeyLimits, KeyRing
from samples.photos import load_photo
from testbed.api import start_api
from transport.keyspace import Keyspace

WARM_UP = 5  # requests before the measured ones: the connection and the worker warm up
OPTIONS = {"ops": [{"op": "auto_levels"}]}


@dataclass(frozen=True)
class Split:
    """Milliseconds of one request: as the client saw it, queued, and rendering."""

    client_ms: float
    queued_ms: float
    running_ms: float

    @property
    def api_ms(self) -> float:
        return self.client_ms - self.queued_ms - self.running_ms


def photo_png(side: int) -> bytes:
    buffer = io.BytesIO()
    load_photo("astronaut").resize((side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def one_preview(client: httpx.Client, image: bytes) -> tuple[float, str]:
    """Seconds one `wait=preview` call took, and its job id."""
    files = {"image": ("photo.png", image, "image/png")}
    started = time.perf_counter()
    answer = client.post(
        "/v1/jobs", files=files, data={"job": json.dumps(OPTIONS)}, params={"wait": "preview"}
    )
    took = time.perf_counter() - started
    if answer.status_code != 200 or not answer.json().get("inline"):
        raise RuntimeError(f"preview answered {answer.status_code}: {answer.text[:300]}")
    return took, str(answer.json()["id"])


def measure(requests: int, side: int) -> list[Split]:
    """Bring the stack up, send `requests` previews one after another, read Redis."""
    with lab() as here:
        here.worker("preview", name="bench-preview")
        key = KeyRing(here.client, Keyspace()).create("bench", KeyLimits(rate_per_min=100_000))
        image = photo_png(side)
        server = start_api(here.server.url, here.tmp, "--no-webhooks", ready_timeout=60)
        try:
            with server.client(key.key) as client:
                for _ in range(WARM_UP):
                    one_preview(client, image)
                calls = [one_preview(client, image) for _ in range(requests)]
        finally:
            server.stop()
        splits = []
        for took, job_id in calls:
            queued, running, done = here.client.hmget(
                Keyspace().job(job_id), "queued_at", "running_at", "succeeded_at"
            )
            splits.append(Split(
                took * 1000,
                (float(running) - float(queued)) * 1000,
                (float(done) - float(running)) * 1000,
            ))  # fmt: skip
        return splits


def report(splits: Sequence[Split]) -> str:
    def row(name: str, values: list[float]) -> list[object]:
        return [name, f"{percentile(values, 50):.1f}", f"{percentile(values, 95):.1f}"]

    rows = [
        row("client (the whole call)", [s.client_ms for s in splits]),
        row("  queued (Redis queued -> running)", [s.queued_ms for s in splits]),
        row("  rendering (running -> succeeded)", [s.running_ms for s in splits]),
        row("  API (the rest)", [s.api_ms for s in splits]),
    ]
    return table(rows, [f"wait=preview, {len(splits)} calls", "p50 ms", "p95 ms"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one-call preview latency through the API")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--side", type=int, default=64, help="upload side in pixels")
    args = parser.parse_args(argv)
    print(report(measure(args.requests, args.side)))


if __name__ == "__main__":
    main()
