"""Extra images through the API against a real Redis (no workers): `extra_image` parts and
JSON `extra_inputs` become the job's `extra_inputs`, vetted under the key's caps like the
main image, stored under the tenant's folder, and checked at submit against what the
recipe's ops read (fetching remote ones is in `test_api_intake`; running them on a
worker in `test_api_extra_inputs_queue`)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from jobs.schema import Job
from jobs.settings import Settings
from producer.api import ApiOptions, create_app
from producer.api_keys import KeyLimits, KeyRing
from storage import read_uri
from transport.keyspace import Keyspace
from transport.messages import priority_list

pytestmark = pytest.mark.integration

URL = "https://images.example.com/friend.jpg"
PEOPLE = {"ops": [{"op": "multi_identity", "params": {"prompt": "two friends at a cafe"}}]}
QWEN = {"ops": [{"op": "qwen_edit", "params": {"prompt": "put the hat from picture 2 on"}}]}
RESIZE = {"ops": [{"op": "resize", "params": {"max_side": 32}}]}


@pytest.fixture
def settings(redis_client: redis.Redis, tmp_path: Path) -> Settings:
    port = redis_client.connection_pool.connection_kwargs["port"]
    return Settings(
        redis_url=f"redis://127.0.0.1:{port}/0", output=str(tmp_path / "out"), home=tmp_path
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # No fetching here: jobs with https inputs stay held in intake (queued, never fetched).
    app = create_app(settings, ApiOptions(fetch_inputs=False))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def key_for(redis_client: redis.Redis, tenant: str, **limits: Any) -> dict[str, str]:
    issued = KeyRing(redis_client).create(tenant, KeyLimits(concurrency=100, **limits))
    return {"Authorization": f"Bearer {issued.key}"}


def png(side: int, seed: int = 0, noise: bool = False) -> bytes:
    """A PNG; `noise` makes it incompressible (about 3 bytes a pixel)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8) if noise else None
    image = Image.fromarray(pixels) if pixels is not None else Image.new("RGB", (side, side))
    if pixels is None:
        image.putpixel((0, 0), (seed % 256, 0, 0))  # distinct bytes per seed
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def form(options: dict[str, Any], image: bytes, extras: list[bytes]) -> dict[str, Any]:
    files = [("image", ("me.png", image, "image/png"))]
    files += [("extra_image", (f"friend{n}.png", e, "image/png")) for n, e in enumerate(extras)]
    return {"files": files, "data": {"job": json.dumps(options)}}


def stored_job(redis_client: redis.Redis, job_id: str) -> Job:
    raw = redis_client.hget(Keyspace().job(job_id), "job")
    assert raw is not None
    return Job.from_json(raw)


def error_of(answer: Any) -> dict[str, str]:
    body: dict[str, dict[str, str]] = answer.json()
    return body["error"]


def test_extra_image_parts_are_stored_in_order_and_become_the_jobs_extra_inputs(
    client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    headers = key_for(redis_client, "friends")
    me, first, second = png(40, 1), png(48, 2), png(56, 3)
    answer = client.post("/v1/jobs", headers=headers, **form(PEOPLE, me, [first, second]))
    assert answer.status_code == 202, answer.text
    assert "file:" not in answer.text and str(settings.output) not in answer.text
    job = stored_job(redis_client, answer.json()["id"])
    uploads = (Path(settings.output) / "tenants" / "friends" / "uploads").resolve().as_uri()
    assert len(job.extra_inputs) == 2
    assert all(uri.startswith(uploads) for uri in [job.input, *job.extra_inputs])
    assert [read_uri(u, settings) for u in [job.input, *job.extra_inputs]] == [me, first, second]
    # all three are on this server already: the job goes straight to its GPU queue
    assert redis_client.llen(priority_list("a10.final", 5)) == 1


def test_json_extra_inputs_take_urls_and_inline_images_and_wait_for_the_fetch(
    client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    headers = key_for(redis_client, "hatter")
    inline = base64.b64encode(png(24, 7)).decode()
    body = {"image_base64": base64.b64encode(png(32)).decode(), **QWEN}
    body["extra_inputs"] = [URL, {"image_base64": inline}]
    answer = client.post("/v1/jobs", headers=headers, json=body)
    assert answer.status_code == 202, answer.text
    job = stored_job(redis_client, answer.json()["id"])
    assert job.extra_inputs[0] == URL
    assert read_uri(job.extra_inputs[1], settings) == png(24, 7)
    # the input is uploaded but an extra input is a URL: held in intake until it is fetched
    assert redis_client.hget(Keyspace().job(job.id), "intake") is not None
    assert redis_client.llen(priority_list("a10.final", 5)) == 0


def test_an_op_that_reads_no_extra_images_refuses_them_naming_the_op(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "resizer")
    uploaded = client.post("/v1/jobs", headers=headers, **form(RESIZE, png(32), [png(32, 1)]))
    assert uploaded.status_code == 422
    assert error_of(uploaded)["message"].startswith("op 'resize' takes no extra inputs")
    named = client.post(
        "/v1/jobs", headers=headers, json={"input": URL, "extra_inputs": [URL], **RESIZE}
    )
    assert named.status_code == 422 and "'resize'" in error_of(named)["message"]
    assert "multi_identity" in error_of(named)["message"]  # says which ops do take them
    assert redis_client.llen(priority_list("cpu.final", 5)) == 0


def test_more_people_or_references_than_the_op_takes_is_a_422_at_submit(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "crowd")
    five = client.post(
        "/v1/jobs", headers=headers, **form(PEOPLE, png(32), [png(32, n) for n in range(4)])
    )
    assert five.status_code == 422
    message = error_of(five)["message"]
    assert "'multi_identity' takes at most 3 extra input(s)" in message
    assert "5 images in all" in message and "1-4 people" in message
    by_url = client.post(
        "/v1/jobs", headers=headers, json={"input": URL, "extra_inputs": [URL] * 4, **PEOPLE}
    )
    assert by_url.status_code == 422 and "multi_identity" in error_of(by_url)["message"]
    qwen = client.post(
        "/v1/jobs", headers=headers, json={"input": URL, "extra_inputs": [URL] * 3, **QWEN}
    )
    assert qwen.status_code == 422 and "'qwen_edit' takes at most 2" in error_of(qwen)["message"]
    six = client.post(
        "/v1/jobs", headers=headers, **form(PEOPLE, png(32), [png(32, n) for n in range(5)])
    )
    assert six.status_code == 422 and "at most 4 `extra_image` parts" in error_of(six)["message"]
    assert redis_client.llen(priority_list("a10.final", 5)) == 0


def test_an_extra_image_over_the_keys_caps_is_refused_naming_it(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "small", max_image_bytes=2000, max_image_pixels=1000)
    heavy = png(30, noise=True)  # ~2.7 kB, 900 pixels: over the byte cap only
    assert len(heavy) > 2000
    too_big = client.post("/v1/jobs", headers=headers, **form(PEOPLE, png(16), [heavy]))
    assert too_big.status_code == 413
    assert error_of(too_big)["code"] == "input_too_large"
    assert error_of(too_big)["message"].startswith("extra input 1: upload is")
    wide = client.post("/v1/jobs", headers=headers, **form(PEOPLE, png(16), [png(16), png(40)]))
    assert wide.status_code == 413 and error_of(wide)["message"].startswith("extra input 2:")
    assert "megapixels" in error_of(wide)["message"]
    not_image = client.post(
        "/v1/jobs",
        headers=headers,
        **form(PEOPLE, png(16), [b"%PDF-1.7 a scanned contract, not a photo"]),
    )
    assert not_image.status_code == 415 and "extra input 1" in error_of(not_image)["message"]
    assert redis_client.llen(priority_list("a10.final", 5)) == 0


def test_an_extra_input_a_tenant_may_not_name_is_refused(
    client: TestClient, redis_client: redis.Redis, tmp_path: Path
) -> None:
    headers = key_for(redis_client, "nosy")
    secret = (tmp_path / "secret.png").as_uri()
    body = {"input": URL, "extra_inputs": [secret], **PEOPLE}
    local = client.post("/v1/jobs", headers=headers, json=body)
    assert local.status_code == 403 and error_of(local)["message"].startswith("extra input 1:")
    body["extra_inputs"] = ["s3://other-tenant/uploads/face.png"]
    other = client.post("/v1/jobs", headers=headers, json=body)
    assert other.status_code == 403


def test_an_idempotency_key_covers_the_extra_images(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = {**key_for(redis_client, "retrier"), "Idempotency-Key": "people-1"}
    first = client.post("/v1/jobs", headers=headers, **form(PEOPLE, png(32), [png(32, 1)]))
    again = client.post("/v1/jobs", headers=headers, **form(PEOPLE, png(32), [png(32, 1)]))
    assert first.status_code == 202 and again.json()["id"] == first.json()["id"]
    other = client.post("/v1/jobs", headers=headers, **form(PEOPLE, png(32), [png(32, 2)]))
    assert other.status_code == 409
