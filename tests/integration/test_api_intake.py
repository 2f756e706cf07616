"""Intake against a real Redis: a batch larger than the key's concurrency is accepted and
paced by the quota (its jobs reach the queue as the tenant's running jobs finish)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from jobs.settings import Settings
from jobs.states import JobState
from producer.api import ApiOptions, create_app
from producer.api_keys import KeyLimits, KeyRing
from transport.keyspace import Keyspace
from transport.messages import priority_list
from transport.store import JobStore

pytestmark = pytest.mark.integration

SHARPEN = {"ops": [{"op": "sharpen"}]}


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
