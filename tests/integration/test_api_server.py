"""A real `darkroom api` process (uvicorn) on a free loopback port (`testbed.api`).

The tests here check the process itself: it serves health and OpenAPI, and stops.
`ApiServer`, `start_api` and `new_key` stay importable from here for the other API tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from producer.api_keys import KeyLimits, KeyRing
from testbed.api import ApiServer, api_env, start_api
from transport.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration

__all__ = ["ApiServer", "api_env", "new_key", "start_api"]


def new_key(redis_url: str, tenant: str, **limits: object) -> str:
    """A fresh API key for `tenant` (generous limits unless given)."""
    client = redis.Redis.from_url(redis_url)
    try:
        values: dict[str, object] = {"rate_per_min": 100_000, "concurrency": 10_000, **limits}
        return KeyRing(client).create(tenant, KeyLimits(**values)).key  # type: ignore[arg-type]
    finally:
        client.close()


@pytest.fixture(scope="module")
def api_server(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    server = start_api(redis_server.url, tmp_path_factory.mktemp("api"))
    yield server
    server.stop()


def test_the_api_process_serves_health_and_its_openapi_document(api_server: ApiServer) -> None:
    health = httpx.get(f"{api_server.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "redis": True}
    spec = httpx.get(f"{api_server.url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/batches", "/edit"} <= set(spec["paths"])
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "JobRequest" in spec["components"]["schemas"]


def test_the_api_process_stops_on_sigterm(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    server = start_api(redis_server.url, tmp_path)
    server.stop()
    assert server.proc.returncode is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/healthz", timeout=1)
