"""The API app against a real Redis, through Starlette's TestClient (no workers).

Auth, rate and concurrency limits, idempotency, tenancy, cancellation, deadlines,
batches, the /edit route, and a corpus of bad input that must get a 4xx (never a
500) while the API keeps serving.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

URL = "https://images.example.com/portrait.jpg"
SHARPEN = {"ops": [{"op": "sharpen"}]}


@pytest.fixture
def settings(redis_client: redis.Redis, tmp_path: Path) -> Settings:
    url = redis_client.connection_pool.connection_kwargs
    return Settings(
        redis_url=f"redis://127.0.0.1:{url['port']}/0",
        output=str(tmp_path / "out"),
        home=tmp_path / "home",
        model_store=str(tmp_path / "models"),
        max_input_pixels=4_000_000,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # No network here: jobs with https inputs stay held in intake (queued, never fetched).
    app = create_app(settings, ApiOptions(preview_wait_s=0.5, fetch_inputs=False))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def key_for(redis_client: redis.Redis, tenant: str, **limits: Any) -> dict[str, str]:
    values = {"rate_per_min": 10_000, "concurrency": 1000, **limits}
    issued = KeyRing(redis_client).create(tenant, KeyLimits(**values))
    return {"Authorization": f"Bearer {issued.key}"}


def png(side: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def stored_job(redis_client: redis.Redis, job_id: str) -> Job:
    raw = redis_client.hget(Keyspace().job(job_id), "job")
    assert raw is not None
    return Job.from_json(raw)


# -- auth and limits --------------------------------------------------------------------


def test_requests_without_a_valid_key_are_refused(
    client: TestClient, redis_client: redis.Redis
) -> None:
    assert client.post("/v1/jobs", json={"input": URL, **SHARPEN}).status_code == 401
    bogus = {"Authorization": "Bearer drk_0123456789ab_" + "x" * 43}
    answer = client.get("/v1/jobs/abc", headers=bogus)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    ring = KeyRing(redis_client)
    issued = ring.create("acme")
    headers = {"X-API-Key": issued.key}
    assert (
        client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).status_code == 202
    )
    ring.revoke(issued.record.id)
    assert (
        client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).status_code == 401
    )


def test_a_key_over_its_rate_gets_429_with_retry_after(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "chatty", rate_per_min=3)
    codes = [client.get("/v1/jobs/nope", headers=headers).status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    refused = client.get("/v1/jobs/nope", headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # one request per 20 s refills
    assert "3 requests/min" in refused.json()["error"]["message"]
    other = key_for(redis_client, "quiet", rate_per_min=3)
    assert client.get("/v1/jobs/nope", headers=other).status_code == 404  # per key


def test_a_tenant_at_its_concurrency_cap_gets_429_until_a_job_ends(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "busy", concurrency=2)
    ids = [
        client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).json()["id"]
        for _ in range(2)
    ]
    refused = client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "concurrency_limit"
    assert client.delete(f"/v1/jobs/{ids[0]}", headers=headers).status_code == 202
    assert (
        client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).status_code == 202
    )
    # A batch is never refused for its size: its jobs wait in intake for the tenant's slots.
    batch = client.post("/v1/batches", json={"inputs": [URL] * 3, **SHARPEN}, headers=headers)
    assert batch.status_code == 202 and batch.json()["total"] == 3


# -- idempotency and tenancy ------------------------------------------------------------


def test_an_idempotency_key_maps_the_same_body_to_the_same_job(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "retrying") | {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers)
    again = client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert redis_client.zcard(Keyspace().intake("retrying")) == 1  # held for its fetch once
    changed = client.post(
        "/v1/jobs", json={"input": URL, "ops": [{"op": "denoise"}]}, headers=headers
    )
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "idempotency_conflict"
    other_tenant = key_for(redis_client, "someone") | {"Idempotency-Key": "order-42"}
    assert (
        client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=other_tenant).status_code
        == 202
    )


def test_a_tenant_cannot_see_or_cancel_another_tenants_job_or_batch(
    client: TestClient, redis_client: redis.Redis
) -> None:
    alice, bob = key_for(redis_client, "alice"), key_for(redis_client, "bob")
    job_id = client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=alice).json()["id"]
    batch_id = client.post("/v1/batches", json={"inputs": [URL], **SHARPEN}, headers=alice).json()[
        "id"
    ]
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("GET", f"/v1/batches/{batch_id}"),
        ("GET", f"/v1/outputs/tenants/alice/outputs/{job_id}.webp"),
    ):
        assert client.request(method, path, headers=bob).status_code == 404, path
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).json()["state"] == "queued"


def test_outputs_route_refuses_paths_outside_the_callers_folder(
    client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    secret = Path(settings.output) / "tenants" / "other" / "outputs" / "x.webp"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"RIFF")
    mine = key_for(redis_client, "mine")
    for path in ("tenants/mine/../other/outputs/x.webp", "tenants/other/outputs/x.webp"):
        assert client.get(f"/v1/outputs/{path}", headers=mine).status_code == 404


# -- cancel and deadlines ---------------------------------------------------------------


def test_a_queued_job_is_canceled_and_never_starts(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "undecided")
    job_id = client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).json()["id"]
    canceled = client.delete(f"/v1/jobs/{job_id}", headers=headers)
    assert canceled.status_code == 202 and canceled.json()["state"] == "canceled"
    assert canceled.json()["error"]["code"] == "canceled"
    assert client.delete(f"/v1/jobs/{job_id}", headers=headers).status_code == 202  # idempotent


def test_a_job_past_its_cancel_after_shows_canceled_and_says_why(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "hurried")
    body = {"input": URL, **SHARPEN, "cancel_after": time.time() + 0.3}
    job_id = client.post("/v1/jobs", json=body, headers=headers).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=headers).json()["state"] == "queued"
    time.sleep(0.4)
    view = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert view["state"] == "canceled"
    assert view["error"]["message"] == "not started before its cancel_after deadline"
    late = client.post("/v1/jobs", json=body | {"cancel_after": time.time() - 1}, headers=headers)
    assert late.status_code == 422 and "in the past" in late.json()["error"]["message"]


def test_jobs_expire_after_the_job_ttl(
    client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    headers = key_for(redis_client, "ephemeral")
    job_id = client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).json()["id"]
    ttl = redis_client.ttl(Keyspace().job(job_id))
    assert 0 < ttl <= settings.job_ttl_s


# -- uploads, batches, /edit ------------------------------------------------------------


def test_an_upload_is_stored_under_the_tenants_prefix_and_referenced(
    client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    headers = key_for(redis_client, "uploader")
    files = {"image": ("a.png", png(), "image/png")}
    answer = client.post(
        "/v1/jobs", headers=headers, files=files, data={"job": json.dumps(SHARPEN)}
    )
    assert answer.status_code == 202, answer.text
    job = stored_job(redis_client, answer.json()["id"])
    uploads = (Path(settings.output) / "tenants" / "uploader" / "uploads").resolve()
    assert job.input.startswith(uploads.as_uri()) and job.tenant == "uploader"
    assert (
        job.output.uri
        == (Path(settings.output) / "tenants/uploader/outputs").resolve().as_uri() + "/"
    )
    assert read_uri(job.input, settings) == png()  # the worker reads the bytes sent

    inline = {"image_base64": base64.b64encode(png(24)).decode(), **SHARPEN}
    answer = client.post("/v1/jobs", headers=headers, json=inline)
    assert answer.status_code == 202, answer.text
    inline_job = stored_job(redis_client, answer.json()["id"])
    assert inline_job.input.startswith(uploads.as_uri()) and inline_job.input != job.input
    assert read_uri(inline_job.input, settings) == png(24)


def test_a_batch_pages_its_jobs_with_a_cursor(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "archive")
    inputs = [f"https://images.example.com/{n}.jpg" for n in range(3)]
    created = client.post("/v1/batches", json={"inputs": inputs, **SHARPEN}, headers=headers)
    assert created.status_code == 202 and created.json()["total"] == 3
    batch_id = created.json()["id"]
    first = client.get(f"/v1/batches/{batch_id}", params={"limit": 2}, headers=headers).json()
    assert len(first["jobs"]) == 2 and first["counts"]["queued"] == 3 and not first["done"]
    rest = client.get(
        f"/v1/batches/{batch_id}",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=headers,
    ).json()
    assert len(rest["jobs"]) == 1 and "next_cursor" not in rest
    seen = {j["id"] for j in first["jobs"] + rest["jobs"]}
    assert len(seen) == 3


def test_edit_maps_phrases_to_a_recipe_in_the_order_written(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "compat")
    body = {"image_url": URL, "instructions": "Remove background, then sharpen", "size": "512x512"}
    answer = client.post("/edit", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    job = stored_job(redis_client, answer.json()["id"])
    assert [s.op for s in job.recipe.steps] == ["remove_background", "sharpen", "resize"]
    assert job.recipe.steps[-1].params == {"width": 512, "height": 512}


def test_edit_refuses_unknown_instructions_listing_what_it_understands(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "compat")
    answer = client.post(
        "/edit", json={"image_url": URL, "instructions": "make the sky purple"}, headers=headers
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "instructions_not_understood"
    assert error["details"][0]["unknown"] == ["make the sky purple"]
    assert "remove background" in error["details"][0]["understood"]


def test_edit_sends_unknown_instructions_to_a_published_edit_model(
    client: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    store = Path(settings.model_store_uri())
    (store / "kontext" / "1").mkdir(parents=True)
    (store / "kontext" / "1" / "manifest.json").write_text("{}")
    (store / "kontext" / "aliases.json").write_text(
        json.dumps({"name": "kontext", "aliases": {"stable": ["1"]}})
    )
    headers = key_for(redis_client, "creative")
    body = {"image_url": URL, "instructions": "denoise and make the sky purple"}
    answer = client.post("/edit", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    job = stored_job(redis_client, answer.json()["id"])
    assert [s.op for s in job.recipe.steps] == ["denoise", "kontext_edit"]
    assert job.recipe.steps[1].params["prompt"] == "and make the sky purple"


# -- bad input --------------------------------------------------------------------------


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)  # a few bytes where gigabytes should be
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat) - 4)
        + idat
        + struct.pack(">I", zlib.crc32(idat))
    )


def _form(options: Any, image: bytes = b"", name: str = "a.png") -> dict[str, Any]:
    return {"files": {"image": (name, image, "image/png")}, "data": {"job": json.dumps(options)}}


BAD_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    (
        "huge JSON",
        {
            "content": b'{"input": "' + b"a" * (2 * 2**20) + b'"}',
            "headers": {"Content-Type": "application/json"},
        },
        413,
    ),
    ("wrong content type", {"content": b"input=x", "headers": {"Content-Type": "text/plain"}}, 415),
    ("no content type", {"content": b"{}"}, 415),
    ("not JSON", {"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 422),
    (
        "NaN",
        {
            "content": b'{"input": "'
            + URL.encode()
            + b'", "ops": [{"op": "sharpen"}], "seed": NaN}',
            "headers": {"Content-Type": "application/json"},
        },
        422,
    ),
    (
        "deep JSON",
        {
            "content": b"[" * 100_000 + b"]" * 100_000,
            "headers": {"Content-Type": "application/json"},
        },
        422,
    ),
    ("JSON array", {"json": [1, 2]}, 422),
    ("unknown op", {"json": {"input": URL, "ops": [{"op": "teleport"}]}}, 422),
    (
        "param out of range",
        {"json": {"input": URL, "ops": [{"op": "denoise", "params": {"strength": 99}}]}},
        422,
    ),
    (
        "unknown param",
        {"json": {"input": URL, "ops": [{"op": "denoise", "params": {"spice": 1}}]}},
        422,
    ),
    ("unknown field", {"json": {"input": URL, **SHARPEN, "colour": "red"}}, 422),
    (
        "recipe and ops",
        {"json": {"input": URL, **SHARPEN, "recipe": {"steps": [{"op": "sharpen"}]}}},
        422,
    ),
    ("no steps", {"json": {"input": URL}}, 422),
    ("too many steps", {"json": {"input": URL, "ops": [{"op": "sharpen"}] * 33}}, 422),
    ("priority out of range", {"json": {"input": URL, **SHARPEN, "priority": 12}}, 422),
    ("http input", {"json": {"input": "http://example.com/a.jpg", **SHARPEN}}, 422),
    ("ftp input", {"json": {"input": "ftp://example.com/a.jpg", **SHARPEN}}, 422),
    ("loopback input", {"json": {"input": "https://127.0.0.1/a.jpg", **SHARPEN}}, 422),
    ("file input", {"json": {"input": "file:///etc/passwd", **SHARPEN}}, 403),
    ("someone's bucket", {"json": {"input": "s3://bucket/tenants/x/a.jpg", **SHARPEN}}, 403),
    (
        "private webhook",
        {"json": {"input": URL, **SHARPEN, "webhook": "https://10.0.0.1/hook"}},
        422,
    ),
    (
        "http webhook",
        {"json": {"input": URL, **SHARPEN, "webhook": "http://example.com/hook"}},
        422,
    ),
    ("bad base64", {"json": {"image_base64": "not base64!!", **SHARPEN}}, 422),
    ("base64 of text", {"json": {"image_base64": "aGVsbG8gd29ybGQ=", **SHARPEN}}, 415),
    ("two images", {"json": {"input": URL, "image_base64": "aGVsbG8=", **SHARPEN}}, 422),
    (
        "broken multipart",
        {
            "content": b"--x\r\nContent-Disposition: form-data\r\n\r\ngarbage",
            "headers": {"Content-Type": "multipart/form-data; boundary=x"},
        },
        400,
    ),
    (
        "multipart without image",
        {"data": {"job": json.dumps(SHARPEN)}, "files": {"other": ("a", b"1")}},
        422,
    ),
    ("non-image upload", _form(SHARPEN, b"#!/bin/sh\necho hi\n", "a.png"), 415),
    ("empty upload", _form(SHARPEN, b""), 422),
    ("bomb PNG header", _form(SHARPEN, bomb_png()), 413),
    ("truncated PNG", _form(SHARPEN, png()[:40]), 422),
    ("bad job part", _form("not an object", png()), 422),
    ("wait nonsense", {"json": {"input": URL, **SHARPEN}, "params": {"wait": "soon"}}, 422),
    (
        "idempotency key too long",
        {"json": {"input": URL, **SHARPEN}, "headers": {"Idempotency-Key": "k" * 300}},
        422,
    ),
]


@pytest.mark.parametrize(
    ("label", "request_kwargs", "status"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_input_gets_a_4xx_and_the_api_keeps_serving(
    client: TestClient,
    redis_client: redis.Redis,
    label: str,
    request_kwargs: dict[str, Any],
    status: int,
) -> None:
    headers = key_for(redis_client, "fuzzer")
    request_kwargs = dict(request_kwargs)
    request_kwargs["headers"] = {**headers, **request_kwargs.get("headers", {})}
    answer = client.post("/v1/jobs", **request_kwargs)
    assert answer.status_code == status, (label, answer.text[:300])
    assert set(answer.json()) == {"error"} and answer.json()["error"]["message"]
    assert client.get("/healthz").status_code == 200
    assert redis_client.llen(priority_list("cpu.final", 5)) == 0  # nothing was queued


def test_a_keys_own_upload_caps_apply(client: TestClient, redis_client: redis.Redis) -> None:
    headers = key_for(redis_client, "small", max_image_bytes=500, max_image_pixels=100)
    too_big = client.post("/v1/jobs", headers=headers, **_form(SHARPEN, png(64)))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "input_too_large"
    tiny = io.BytesIO()
    Image.new("RGB", (16, 16)).save(tiny, "PNG")
    too_many = client.post("/v1/jobs", headers=headers, **_form(SHARPEN, tiny.getvalue()))
    assert too_many.status_code == 413 and "megapixels" in too_many.json()["error"]["message"]


def test_a_key_limited_to_some_ops_is_refused_others(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "narrow", ops=frozenset({"sharpen"}))
    assert (
        client.post("/v1/jobs", json={"input": URL, **SHARPEN}, headers=headers).status_code == 202
    )
    denied = client.post(
        "/v1/jobs", json={"input": URL, "ops": [{"op": "denoise"}]}, headers=headers
    )
    assert denied.status_code == 403 and "denoise" in denied.json()["error"]["message"]


def test_an_archive_asks_the_api_for_16_bit_tiff_with_metadata_stripped(
    client: TestClient, redis_client: redis.Redis
) -> None:
    headers = key_for(redis_client, "archive")
    output = {"format": "tiff", "bit_depth": 16, "metadata": "strip", "frames": "first"}
    answer = client.post(
        "/v1/jobs",
        headers=headers,
        files={"image": ("a.png", png(), "image/png")},
        data={"job": json.dumps({**SHARPEN, "output": output})},
    )
    assert answer.status_code == 202, answer.text
    job = stored_job(redis_client, answer.json()["id"])
    assert (job.output.format, job.output.bit_depth) == ("tiff", 16)
    assert (job.output.metadata, job.output.frames) == ("strip", "first")
    assert job.output.extension == "tif"

    refused = client.post(
        "/v1/jobs",
        headers=headers,
        files={"image": ("a.png", png(), "image/png")},
        data={"job": json.dumps({**SHARPEN, "output": {"format": "tiff", "bit_depth": 12}})},
    )
    assert refused.status_code == 422 and "bit_depth" in refused.text
