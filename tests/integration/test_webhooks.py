"""The webhook deliverer against a real Redis and a real loopback HTTP receiver.

`Receiver` is importable by other test modules: a threaded HTTP server on a free
127.0.0.1 port that answers with scripted statuses and records what it was sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs import Job, Recipe, Step
from jobs.settings import Settings
from jobs.states import JobState
from producer.api_keys import KeyRing
from transport.keyspace import Keyspace
from transport.store import JobStore, Submission
from workers.webhooks import SIGNATURE_HEADER, Deliverer, WebhookPolicy, job_finished, verify

pytestmark = pytest.mark.integration

FAST = WebhookPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.2, timeout_s=2, lease_s=1)


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers POSTs with `statuses` in turn (the last one repeats) and records them."""

    statuses: list[int] = field(default_factory=lambda: [200])
    hits: list[Hit] = field(default_factory=list)
    redirect_to: str = "http://127.0.0.1:1/elsewhere"
    delay_s: float = 0.0  # answer this late (a tarpit receiver)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                time.sleep(receiver.delay_s)
                index = len(receiver.hits)
                receiver.hits.append(Hit(self.path, dict(self.headers.items()), body))
                status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                with contextlib.suppress(OSError):  # a sender that gave up has closed
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", receiver.redirect_to)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, count: int, timeout: float = 30) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.hits


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.stop()


def _settings(redis_url: str, tmp: Path, allow_private: bool = True) -> Settings:
    return Settings(redis_url=redis_url, output=str(tmp / "out"), fetch_allow_private=allow_private)


def _finished_job(client: redis.Redis, url: str, secret_of: str | None = None) -> Job:
    """A job recorded as succeeded with `url` as its webhook, announced as a worker does."""
    store = JobStore(client)
    job = Job(
        input="https://example.com/a.jpg", recipe=Recipe(steps=[Step(op="sharpen")]), webhook=url
    )
    store.enqueue([Submission(job, "cpu.final")])
    if secret_of is not None:
        client.hset(Keyspace().job(job.id), "api_key", secret_of)
    store.transition(job.id, JobState.RUNNING, attempt=True)
    store.transition(job.id, JobState.SUCCEEDED, output="file:///tmp/x.webp")
    job_finished(client, Keyspace(), job, JobState.SUCCEEDED)
    return job


def _webhook_record(client: redis.Redis, job_id: str) -> dict[str, Any]:
    raw = client.hget(Keyspace().job(job_id), "webhook")
    assert raw is not None
    return dict(json.loads(raw))


def _deliver(client: redis.Redis, settings: Settings, seconds: float) -> int:
    stop = threading.Event()
    return Deliverer(settings, client, Keyspace(), FAST).run(stop, max_s=seconds, drain=True)


def test_a_delivery_is_signed_with_the_keys_secret(
    redis_client: redis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    issued = KeyRing(redis_client).create("acme")
    job = _finished_job(redis_client, receiver.url, secret_of=issued.record.id)
    _deliver(redis_client, _settings("redis://unused", tmp_path), 1.0)
    (hit,) = receiver.wait_for(1)
    assert hit.path == "/hook" and hit.json()["type"] == "job.succeeded"
    assert hit.json()["data"]["id"] == job.id and hit.json()["data"]["state"] == "succeeded"
    signature = hit.headers[SIGNATURE_HEADER]
    assert verify(issued.record.webhook_secret, signature, hit.body)
    assert not verify("whsec_wrong", signature, hit.body)
    assert not verify(issued.record.webhook_secret, signature, hit.body + b" ")
    record = _webhook_record(redis_client, job.id)
    assert record["state"] == "delivered" and record["attempts"] == 1
    assert record["last_status"] == 200 and record["delivered_at"] > 0


def test_a_500_is_retried_with_backoff_and_attempts_are_recorded(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    receiver = Receiver(statuses=[500, 503, 200]).start()
    try:
        job = _finished_job(redis_client, receiver.url)
        _deliver(redis_client, _settings("redis://unused", tmp_path), 3.0)
        hits = receiver.wait_for(3)
    finally:
        receiver.stop()
    assert len(hits) == 3
    assert len({h.headers["Darkroom-Delivery"] for h in hits}) == 1  # one delivery, retried
    record = _webhook_record(redis_client, job.id)
    assert record["state"] == "delivered" and record["attempts"] == 3
    assert redis_client.zcard(Keyspace().webhook_due()) == 0


def test_a_receiver_that_keeps_failing_exhausts_the_attempts(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    receiver = Receiver(statuses=[502]).start()
    try:
        job = _finished_job(redis_client, receiver.url)
        _deliver(redis_client, _settings("redis://unused", tmp_path), 3.0)
    finally:
        receiver.stop()
    assert len(receiver.hits) == FAST.max_attempts
    record = _webhook_record(redis_client, job.id)
    assert record["state"] == "failed" and record["last_status"] == 502
    assert redis_client.hlen(Keyspace().webhook_deliveries()) == 0


def test_redirects_are_not_followed(redis_client: redis.Redis, tmp_path: Path) -> None:
    target = Receiver().start()
    receiver = Receiver(statuses=[302], redirect_to=target.url).start()
    try:
        job = _finished_job(redis_client, receiver.url)
        _deliver(redis_client, _settings("redis://unused", tmp_path), 1.0)
    finally:
        receiver.stop()
        target.stop()
    assert len(receiver.hits) == 1 and target.hits == []
    record = _webhook_record(redis_client, job.id)
    assert record["state"] == "failed" and "redirect" in record["last_error"]


def test_loopback_receivers_are_refused_unless_private_addresses_are_allowed(
    redis_client: redis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    https_url = receiver.url.replace("http://", "https://")
    job = _finished_job(redis_client, https_url)
    _deliver(redis_client, _settings("redis://unused", tmp_path, allow_private=False), 1.0)
    assert receiver.hits == []
    record = _webhook_record(redis_client, job.id)
    assert record["state"] == "failed" and "loopback" in record["last_error"]


def test_a_delivery_claimed_by_a_deliverer_that_died_comes_due_again(
    redis_client: redis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    job = _finished_job(redis_client, receiver.url)
    settings = _settings("redis://unused", tmp_path)
    dead = Deliverer(settings, redis_client, Keyspace(), FAST)
    # claim it the way a deliverer does, then "die" before sending
    now = time.time()
    claimed = dead._claim(
        keys=[Keyspace().webhook_due(), Keyspace().webhook_deliveries()],
        args=[repr(now), repr(now + FAST.lease_s)],
    )
    assert claimed[0]
    assert _deliver(redis_client, settings, 0.3) == 0  # leased: nobody sends it yet
    _deliver(redis_client, settings, 2.0)
    assert len(receiver.wait_for(1)) == 1
    assert _webhook_record(redis_client, job.id)["state"] == "delivered"


def test_a_slow_receiver_delays_only_its_own_deliveries(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    slow, fast = Receiver(delay_s=3.0).start(), Receiver().start()  # FAST times out at 2 s
    stop = threading.Event()
    thread = threading.Thread()
    try:
        stalled = [_finished_job(redis_client, slow.url) for _ in range(4)]
        quick = _finished_job(redis_client, fast.url)
        deliverer = Deliverer(_settings("redis://unused", tmp_path), redis_client, Keyspace(), FAST)
        thread = threading.Thread(target=deliverer.run, args=(stop,), kwargs={"max_s": 10})
        thread.start()
        assert len(fast.wait_for(1, timeout=10)) == 1
        # the fast receiver was served before any attempt at the slow one had ended
        ended = [redis_client.hget(Keyspace().job(job.id), "webhook") for job in stalled]
        assert ended == [None] * 4
        assert until_delivered(redis_client, quick.id)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=10)  # its senders finish their attempts first
        slow.stop()
        fast.stop()


def until_delivered(client: redis.Redis, job_id: str, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.hget(Keyspace().job(job_id), "webhook")
        if raw and json.loads(raw)["state"] == "delivered":
            return True
        time.sleep(0.02)
    return False


def test_a_tenants_webhook_shows_its_own_uri_forms_never_server_paths(
    redis_client: redis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    root = (tmp_path / "out").resolve().as_uri()
    job = _finished_job(redis_client, receiver.url)
    redis_client.hset(
        Keyspace().job(job.id),
        mapping={"tenant": "t", "output": f"{root}/tenants/t/outputs/{job.id}.webp"},
    )
    _deliver(redis_client, _settings("redis://unused", tmp_path), 3.0)
    body = receiver.wait_for(1)[0].json()
    assert body["data"]["output"] == f"/v1/outputs/tenants/t/outputs/{job.id}.webp"
    assert str(tmp_path) not in json.dumps(body)
