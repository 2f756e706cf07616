"""A real `darkroom api` process (uvicorn) on a free loopback port, for end-to-end tests.

`ApiServer` is importable by other test modules (fault-injection and load tests):
`start_api(redis_url, tmp)` starts one and waits for `/healthz`; `stop()` ends it by PID.
The tests here check the process itself: it serves health and OpenAPI, and stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from producer.api_keys import KeyLimits, KeyRing
from transport.embedded import EmbeddedRedis, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ApiServer:
    """One API process in its own session, with the env it was started with."""

    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return Path(self.env["DARKROOM_OUTPUT"])

    def client(self, key: str | None = None, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"api not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def api_env(redis_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "DARKROOM_REDIS_URL": redis_url,
        "DARKROOM_OUTPUT": str(tmp / "out"),
        "DARKROOM_HOME": str(tmp / "home"),
        "DARKROOM_FETCH_ALLOW_PRIVATE": "true",  # loopback webhook receivers in tests
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def start_api(redis_url: str, tmp: Path, *args: str, **env: str) -> ApiServer:
    """`python -m darkroom.api` on a free port; returns once /healthz answers."""
    port = free_port()
    full_env = api_env(redis_url, tmp, **env)
    log = tmp / f"api-{port}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "darkroom.api",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, **full_env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ApiServer(proc, port, full_env, log)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


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
