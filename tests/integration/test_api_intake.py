"""Intake against a real Redis: remote inputs are fetched from a real HTTPS server, vetted
under the key's caps and stored before their jobs are queued; a slow one fails its own job
and delays no one; a batch larger than the key's concurrency is accepted and paced by the
quota; batches and /edit check the key before reading the body."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from jobs.settings import Settings
from jobs.states import JobState
from producer.api import ApiOptions, create_app
from producer.api_keys import KeyLimits, KeyRing
from transport.keyspace import Keyspace
from transport.messages import priority_list
from transport.store import JobStore

pytestmark = pytest.mark.integration

SHARPEN = {"ops": [{"op": "sharpen"}]}
GEN_CERTS = Path(__file__).resolve().parents[1] / "security" / "cases" / "gen_certs.sh"


@pytest.fixture
def client(redis_client: redis.Redis, tmp_path: Path) -> Iterator[TestClient]:
    port = redis_client.connection_pool.connection_kwargs["port"]
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0", output=str(tmp_path / "out"), home=tmp_path
    )
    with TestClient(create_app(settings, ApiOptions()), raise_server_exceptions=False) as c:
        yield c


def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    return check()


def test_a_batch_larger_than_the_quota_is_accepted_and_paced_by_it(
    client: TestClient, redis_client: redis.Redis, tmp_path: Path
) -> None:
    issued = KeyRing(redis_client).create("paced", KeyLimits(concurrency=2, admin=True))
    headers = {"Authorization": f"Bearer {issued.key}"}
    inputs = [(tmp_path / f"{n}.png").as_uri() for n in range(5)]
    created = client.post("/v1/batches", json={"inputs": inputs, **SHARPEN}, headers=headers)
    assert created.status_code == 202, created.text
    assert created.json()["total"] == 5
    queue = priority_list("cpu.final", 5)
    assert until(lambda: redis_client.llen(queue) == 2)
    time.sleep(1.5)  # the quota holds: nothing more reaches the queue
    assert redis_client.llen(queue) == 2
    assert redis_client.zcard(Keyspace().intake("paced")) == 3
    # a worker finishes one job: one more is let through
    store = JobStore(redis_client)
    first = Keyspace().job("")
    running = [
        k.decode().removeprefix(first)
        for k in redis_client.keys(first + "*")
        if redis_client.hget(k, "intake") is None
    ]
    store.transition(running[0], JobState.RUNNING, attempt=True, worker="w")
    store.transition(running[0], JobState.SUCCEEDED)
    assert until(lambda: redis_client.llen(queue) == 3)
    batch = client.get(f"/v1/batches/{created.json()['id']}", headers=headers).json()
    assert batch["counts"]["queued"] == 4 and batch["counts"]["succeeded"] == 1


def test_a_tenant_may_hold_a_bounded_number_of_waiting_jobs(
    client: TestClient, redis_client: redis.Redis, tmp_path: Path
) -> None:
    issued = KeyRing(redis_client).create("hoarder", KeyLimits(concurrency=1, admin=True))
    headers = {"Authorization": f"Bearer {issued.key}"}
    full = {"inputs": [(tmp_path / f"{n}.png").as_uri() for n in range(1000)], **SHARPEN}
    assert client.post("/v1/batches", json=full, headers=headers).status_code == 202
    more = client.post("/v1/batches", json={**full, "inputs": full["inputs"][:2]}, headers=headers)
    assert more.status_code == 429 and more.json()["error"]["code"] == "intake_full"
    assert "may have 1000 waiting" in more.json()["error"]["message"]


def test_batches_and_edit_check_the_key_before_reading_the_body(
    client: TestClient, redis_client: redis.Redis
) -> None:
    junk = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    for path in ("/v1/batches", "/edit"):
        assert client.post(path, **junk).status_code == 401, path
    issued = KeyRing(redis_client).create("nested")
    deep = (
        '{"inputs": ["https://a.example/x.png"], "ops": [{"op": "sharpen", "params": {"x": %s}}]}'
    )
    body = deep % ("[" * 300 + "]" * 300)
    refused = client.post(
        "/v1/batches",
        content=body.encode(),
        headers={"Authorization": f"Bearer {issued.key}", "Content-Type": "application/json"},
    )
    assert refused.status_code == 422 and "nests deeper" in refused.json()["error"]["message"]


# -- remote inputs: fetched, vetted and stored by intake ---------------------------------


@dataclass
class HttpsHost:
    """A TLS server on 127.0.0.1 (certificate from a throwaway CA) serving test images."""

    port: int
    ca: Path

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (30, 60, 90)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def https_host(tmp_path: Path) -> Iterator[HttpsHost]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certs = tmp_path / "certs"
    subprocess.run(["bash", str(GEN_CERTS), str(certs)], check=True, capture_output=True)
    pages = {"/small.png": _png(64), "/big.png": _png(600)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/slow.png":
                time.sleep(3)  # past the fetch timeout the tests set
            body = pages.get(path, pages["/small.png"])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "srv.pem", certs / "srv.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield HttpsHost(server.server_address[1], certs / "ca.pem")
    server.shutdown()
    server.server_close()


@pytest.fixture
def fetching(
    redis_client: redis.Redis,
    tmp_path: Path,
    https_host: HttpsHost,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    monkeypatch.setenv("SSL_CERT_FILE", str(https_host.ca))  # trust the throwaway CA only
    port = redis_client.connection_pool.connection_kwargs["port"]
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        output=str(tmp_path / "out"),
        home=tmp_path,
        fetch_allow_private=True,  # the test host is on loopback
        fetch_timeout_s=1,
        fetch_budget_s=2,
    )
    with TestClient(create_app(settings, ApiOptions()), raise_server_exceptions=False) as c:
        yield c


def _key(redis_client: redis.Redis, tenant: str, **limits: Any) -> dict[str, str]:
    issued = KeyRing(redis_client).create(tenant, KeyLimits(**limits))
    return {"Authorization": f"Bearer {issued.key}"}


def test_a_url_input_is_fetched_vetted_and_stored_before_it_is_queued(
    fetching: TestClient, redis_client: redis.Redis, https_host: HttpsHost
) -> None:
    headers = _key(redis_client, "fetcher")
    job_id = fetching.post(
        "/v1/jobs", json={"input": https_host.url("/small.png"), **SHARPEN}, headers=headers
    ).json()["id"]
    queue = priority_list("cpu.final", 5)
    assert until(lambda: redis_client.llen(queue) == 1)
    stored = json.loads(redis_client.hget(Keyspace().job(job_id), "job") or b"{}")
    assert "/tenants/fetcher/uploads/" in stored["input"] and stored["input"].endswith(".png")


def test_a_url_input_over_the_keys_caps_fails_without_reaching_a_queue(
    fetching: TestClient, redis_client: redis.Redis, https_host: HttpsHost
) -> None:
    headers = _key(redis_client, "capped", max_image_pixels=100_000)
    body = {"input": https_host.url("/big.png"), **SHARPEN}
    job_id = fetching.post("/v1/jobs", json=body, headers=headers).json()["id"]
    view = until(lambda: _failed(fetching, headers, job_id))
    assert view["error"]["code"] == "input_too_large" and "600x600" in view["error"]["message"]
    assert view["attempts"] == 0
    assert redis_client.llen(priority_list("cpu.final", 5)) == 0


def test_a_slow_url_fails_its_own_job_after_the_fetch_budget_and_delays_no_one(
    fetching: TestClient, redis_client: redis.Redis, https_host: HttpsHost
) -> None:
    slow_key = _key(redis_client, "slowpoke")
    slow_ids = [
        fetching.post(
            "/v1/jobs",
            json={"input": https_host.url(f"/slow.png?{n}"), **SHARPEN},
            headers=slow_key,
        ).json()["id"]
        for n in range(2)
    ]
    other = _key(redis_client, "neighbour")
    upload = {"image_base64": base64.b64encode(_png(32)).decode(), **SHARPEN}
    assert fetching.post("/v1/jobs", json=upload, headers=other).status_code == 202
    # the neighbour's job is on the queue while the slow fetches are still going
    assert redis_client.llen(priority_list("cpu.final", 5)) == 1
    for job_id in slow_ids:
        view = until(lambda job_id=job_id: _failed(fetching, slow_key, job_id))
        assert view["error"]["code"] == "timeout" and "within 2 s" in view["error"]["message"]
    assert redis_client.llen(priority_list("cpu.final", 5)) == 1


def _failed(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any] | None:
    view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    return view if view["state"] == "failed" else None


# -- extra images named by URL: the same fetch, caps and vetting as the input ------------

QWEN = {"ops": [{"op": "qwen_edit", "params": {"prompt": "put the hat from picture 2 on"}}]}


def test_a_url_extra_input_is_fetched_vetted_and_stored_before_it_is_queued(
    fetching: TestClient, redis_client: redis.Redis, https_host: HttpsHost
) -> None:
    headers = _key(redis_client, "referrer")
    body = {"image_base64": base64.b64encode(_png(32)).decode(), **QWEN}
    body["extra_inputs"] = [https_host.url("/small.png")]
    job_id = fetching.post("/v1/jobs", json=body, headers=headers).json()["id"]
    assert until(lambda: redis_client.llen(priority_list("a10.final", 5)) == 1)
    stored = json.loads(redis_client.hget(Keyspace().job(job_id), "job") or b"{}")
    [extra] = stored["extra_inputs"]
    assert "/tenants/referrer/uploads/" in extra and extra.endswith(".png")


def test_a_url_extra_input_over_the_keys_caps_fails_the_job_naming_it(
    fetching: TestClient, redis_client: redis.Redis, https_host: HttpsHost
) -> None:
    headers = _key(redis_client, "capped-extra", max_image_pixels=100_000)
    body = {"image_base64": base64.b64encode(_png(32)).decode(), **QWEN}
    body["extra_inputs"] = [https_host.url("/big.png")]
    job_id = fetching.post("/v1/jobs", json=body, headers=headers).json()["id"]
    view = until(lambda: _failed(fetching, headers, job_id))
    assert view["error"]["code"] == "input_too_large"
    assert view["error"]["message"].startswith("extra input 1: ")
    assert "600x600" in view["error"]["message"] and "file:" not in view["error"]["message"]
    assert redis_client.llen(priority_list("a10.final", 5)) == 0
