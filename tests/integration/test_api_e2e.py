"""End to end over HTTP: a real `darkroom api` process, real Celery workers, real Redis.

Jobs go in through the API (uploads included), run on a preview and a final worker,
and come back as output links, inline WebP previews, server-sent events and signed
webhooks. The one-call preview latency is a benchmark: `python -m bench.preview`.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from PIL import Image
from skimage import data

from producer.api_keys import KeyLimits, KeyRing
from testbed.workers import WorkerFactory, worker_env
from tests.integration.test_api_server import ApiServer, new_key, start_api
from tests.integration.test_webhooks import Receiver
from transport.embedded import EmbeddedRedis
from workers.webhooks import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """The API plus one preview and one final CPU worker, for the whole module."""
    tmp = tmp_path_factory.mktemp("e2e")
    env = worker_env(redis_server.url, tmp, DARKROOM_OUTPUT=str(tmp / "worker-out"))
    workers = WorkerFactory(redis_server.url, env, tmp)
    api = start_api(redis_server.url, tmp)
    try:
        workers.start(lane="preview", name="e2e-preview", wait=False)
        workers.start(lane="final", name="e2e-final", wait=False)
        for worker in workers.started:
            workers.wait_ready(worker)
        yield api
    finally:
        api.stop()
        workers.stop_all()


def png(side: int = 96) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(
    client: httpx.Client, options: dict[str, Any], image: bytes, **kwargs: Any
) -> httpx.Response:
    files = {"image": ("photo.png", image, "image/png")}
    return client.post("/v1/jobs", files=files, data={"job": json.dumps(options)}, **kwargs)


def wait_state(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if view["state"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


SLOW_OPS = [{"op": "denoise", "params": {"strength": 30}}] * 12  # ~0.4 s a step at 512 px


def test_an_uploaded_job_succeeds_and_its_output_link_downloads(stack: ApiServer) -> None:
    key, other = new_key(stack.env["DARKROOM_REDIS_URL"], "studio"), None
    options = {"ops": [{"op": "resize", "params": {"max_side": 64}}, {"op": "auto_levels"}]}
    with stack.client(key) as client:
        created = upload(client, options | {"output": {"format": "png"}}, png())
        assert created.status_code == 202, created.text
        view = wait_state(client, created.json()["id"])
        assert view["state"] == "succeeded", view
        assert view["timings"]["total_s"] >= view["timings"]["run_s"] >= 0
        link = view["output"]["url"]
        assert view["output"]["format"] == "png" and "/v1/outputs/tenants/studio/" in link
        got = client.get(link)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(got.content)).size == (64, 64)
    other = new_key(stack.env["DARKROOM_REDIS_URL"], "rival")
    with stack.client(other) as rival:
        assert rival.get(link).status_code == 404
        assert rival.get(f"/v1/jobs/{view['id']}").status_code == 404


def test_wait_preview_answers_with_the_result_inline_as_webp(stack: ApiServer) -> None:
    key = new_key(stack.env["DARKROOM_REDIS_URL"], "app")
    options = {"ops": [{"op": "sharpen"}]}
    with stack.client(key) as client:
        answer = upload(client, options, png(), params={"wait": "preview"})
        assert answer.status_code == 200, answer.text
        view = answer.json()
        assert view["state"] == "succeeded" and view["mode"] == "preview"
        inline = base64.b64decode(view["inline"]["data"])
        assert inline[:4] == b"RIFF" and inline[8:12] == b"WEBP"
        assert Image.open(io.BytesIO(inline)).size == (96, 96)
        raw = upload(client, options, png(), headers={"Accept": "image/webp", "Prefer": "wait=10"})
        assert raw.status_code == 200 and raw.headers["content-type"] == "image/webp"
        assert raw.headers["preference-applied"] == "wait=10"
        assert Image.open(io.BytesIO(raw.content)).format == "WEBP"


def test_the_event_stream_follows_a_job_from_running_to_succeeded(stack: ApiServer) -> None:
    key = new_key(stack.env["DARKROOM_REDIS_URL"], "streamer")
    with stack.client(key) as client:
        created = upload(client, {"ops": SLOW_OPS[:4]}, png(512))
        job_id = created.json()["id"]
        events: list[tuple[str, dict[str, Any]]] = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: ") :])))
    names = [name for name, _ in events]
    assert "running" in names and names[-1] == "succeeded", names
    progress = [view.get("progress") or 0 for name, view in events if name == "running"]
    assert progress == sorted(progress)  # progress only moves forward
    assert events[-1][1]["output"]["url"]


def test_delete_stops_a_running_job_at_its_next_step(stack: ApiServer) -> None:
    key = new_key(stack.env["DARKROOM_REDIS_URL"], "canceller")
    with stack.client(key) as client:
        job_id = upload(client, {"ops": SLOW_OPS}, png(512)).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        asked = client.delete(f"/v1/jobs/{job_id}")
        assert asked.status_code == 202 and asked.json()["cancel_requested"] is True
        view = wait_state(client, job_id, timeout=30)
    assert view["state"] == "canceled" and view["error"]["code"] == "canceled"
    ran = view["timestamps"]["canceled_at"] - view["timestamps"]["running_at"]
    assert ran < 0.4 * len(SLOW_OPS)  # it did not run all its steps


def test_a_webhook_is_retried_after_a_500_and_signed_with_the_keys_secret(
    stack: ApiServer,
) -> None:
    client_redis = redis.Redis.from_url(stack.env["DARKROOM_REDIS_URL"])
    issued = KeyRing(client_redis).create("hooked", KeyLimits(rate_per_min=1000))
    receiver = Receiver(statuses=[500, 200]).start()
    try:
        with stack.client(issued.key) as client:
            options = {"ops": [{"op": "sharpen"}], "webhook": receiver.url}
            job_id = upload(client, options, png()).json()["id"]
            hits = receiver.wait_for(2, timeout=30)
            assert len(hits) == 2
            view = wait_state(client, job_id)
            deadline = time.monotonic() + 5
            while view["webhook"]["state"] != "delivered" and time.monotonic() < deadline:
                time.sleep(0.05)
                view = client.get(f"/v1/jobs/{job_id}").json()
    finally:
        receiver.stop()
        client_redis.close()
    for hit in hits:
        assert verify(issued.record.webhook_secret, hit.headers[SIGNATURE_HEADER], hit.body)
        assert hit.json()["type"] == "job.succeeded" and hit.json()["data"]["id"] == job_id
    assert view["webhook"]["attempts"] == 2 and view["webhook"]["last_status"] == 200
    assert view["webhook"]["delivered_at"] >= view["timestamps"]["succeeded_at"]


def test_previews_in_a_row_each_answer_with_their_own_image(stack: ApiServer) -> None:
    """One `wait=preview` call after another, each upload a different size: every
    answer is its own upload's preview, levelled (latency: `python -m bench.preview`)."""
    key = new_key(stack.env["DARKROOM_REDIS_URL"], "previewer")
    options = {"ops": [{"op": "auto_levels"}]}
    sides = [48 + 8 * i for i in range(8)]
    with stack.client(key) as client:
        answers = [upload(client, options, dim_png(side), params={"wait": "preview"})
                   for side in sides]  # fmt: skip
    for side, answer in zip(sides, answers, strict=True):
        assert answer.status_code == 200, answer.text
        view = answer.json()
        assert view["state"] == "succeeded" and view["mode"] == "preview"
        preview = Image.open(io.BytesIO(base64.b64decode(view["inline"]["data"])))
        assert preview.size == (side, side)
        # auto_levels stretched the dim upload (levels 60..120) towards the full range
        low, high = preview.convert("L").getextrema()
        assert low < 30 and high > 220, (side, low, high)


def dim_png(side: int) -> bytes:
    """A `side` x `side` astronaut squeezed into levels 60..120, as a dull scan is."""
    pixels = np.asarray(Image.fromarray(data.astronaut()).resize((side, side)), np.float32)
    buffer = io.BytesIO()
    Image.fromarray((60 + pixels * 60 / 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
