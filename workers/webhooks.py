"""Job webhooks: queued durably in Redis, signed, retried with backoff, never redirected.

When a job reaches a terminal state the worker calls `job_finished`: it publishes
`<job id> <state>` on `Keys.job_events()` (what the API's waiters and event streams
wake on) and, if the job names a webhook, queues a delivery:

- `Keys.webhook_deliveries()` hash: delivery id -> `{"id", "job", "event", "attempt"}`;
- `Keys.webhook_due()` ZSET: delivery id -> when it is due. A deliverer claims a due
  delivery by pushing its score to a lease deadline, so one that dies mid-send leaves
  it to come due again (at-least-once: receivers dedupe on `Darkroom-Delivery`);
- `Keys.webhook_wake()` list: one item wakes an idle deliverer at once.

A `Deliverer` (`darkroom webhooks serve`, or a thread in the API process) POSTs the
payload as JSON with `Darkroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the API key's webhook secret>`. 2xx is delivered; 408, 429, 5xx,
timeouts and connection errors are retried with exponential backoff; anything else
(a redirect included: they are never followed) fails the delivery. Addresses are vetted
as `storage.fetch` vets inputs: only public ones, unless `settings.fetch_allow_private`
(tests), which also allows plain http. Each attempt is recorded on the job's hash as
the `webhook` JSON field.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import random
import signal
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from jobs.errors import InputInvalid, JobError
from jobs.keys import Keys
from jobs.states import JobState
from storage.fetch import PinnedHTTPSConnection, Target, parse_target, vetted_addresses

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

    from jobs.schema import Job
    from jobs.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Darkroom-Signature"
WEBHOOK_SECRET_FIELD = "webhook_secret"  # on the API key's hash (producer.keys writes it)
RESPONSE_READ_CAP = 64 * 1024
RETRY_STATUSES = frozenset({408, 429})

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then
  local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'', '', nxt[2] or ''}
end
local data = redis.call('HGET', KEYS[2], due[1])
if not data then
  redis.call('ZREM', KEYS[1], due[1])
  return {'', '', ARGV[1]}
end
redis.call('ZADD', KEYS[1], ARGV[2], due[1])
return {due[1], data, ''}
"""
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""


# -- queueing (the worker side, and the API for jobs it cancels itself) -----------------


def enqueue(client: Redis | Pipeline, keys: Keys, job_id: str, event: str) -> str:
    """Queue one delivery of `event` for `job_id`; returns the delivery id."""
    delivery_id = uuid.uuid4().hex
    delivery = {"id": delivery_id, "job": job_id, "event": event, "attempt": 0}
    client.hset(keys.webhook_deliveries(), delivery_id, json.dumps(delivery))
    client.zadd(keys.webhook_due(), {delivery_id: time.time()})
    client.lpush(keys.webhook_wake(), "1")
    client.ltrim(keys.webhook_wake(), 0, 0)
    return delivery_id


def job_finished(redis: Redis, keys: Keys, job: Job, state: JobState) -> None:
    """Announce a terminal state and queue the job's webhook. Logs, never raises: the
    job's state is already recorded, and a lost notice must not fail it."""
    try:
        pipe = redis.pipeline(transaction=True)
        if job.webhook:
            enqueue(pipe, keys, job.id, f"job.{state.value}")
        pipe.publish(keys.job_events(), f"{job.id} {state.value}")
        pipe.execute()
    except Exception:
        log.exception("job %s: could not announce %s or queue its webhook", job.id, state)


# -- signing ---------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Darkroom-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """Whether `header` signs `body` under `secret`, sent within `tolerance_s` of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


# -- sending ---------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain http to a vetted address (only with `fetch_allow_private`: tests, dev)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), timeout=self.timeout)

    def release(self) -> None:
        self.close()


def webhook_target(url: str, settings: Settings) -> Target:
    """The URL split for sending; refuses what `storage.fetch` refuses (plain http too,
    unless private addresses are allowed)."""
    parts = urlsplit(url)
    if parts.scheme == "http" and settings.fetch_allow_private and parts.hostname:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(url=url, host=parts.hostname, port=parts.port or 80, path=path)
    return parse_target(url)


def post(url: str, body: bytes, headers: dict[str, str], settings: Settings, timeout: float) -> int:
    """POST `body` to `url` from a vetted address; the response status. Raises
    `InputInvalid` (refused URL), `OSError` / `HTTPException` (network)."""
    target = webhook_target(url, settings)
    addresses = vetted_addresses(target, settings)
    deadline = time.monotonic() + timeout
    failure: Exception = ConnectionError(f"no address of {target.host} answered")
    for address in addresses:
        if target.url.startswith("https"):
            context = ssl.create_default_context()
            conn: Any = PinnedHTTPSConnection(target.host, target.port, address, context, deadline)
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(RESPONSE_READ_CAP)
            return int(response.status)
        except (OSError, http.client.HTTPException) as exc:
            failure = exc
        finally:
            conn.release()
    raise failure


# -- delivering ------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookPolicy:
    max_attempts: int = 8
    base_delay_s: float = 2.0  # then 4, 8, 16 ... up to max_delay_s
    max_delay_s: float = 900.0
    timeout_s: float = 10.0
    lease_s: float = 60.0  # a claimed delivery comes due again after this if not settled

    def delay(self, attempt: int) -> float:
        raw = min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)
        return raw * random.uniform(1.0, 1.1)  # spread retries of a burst apart


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None
    retry: bool

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Deliverer:
    """Claims due deliveries and sends them; many may run against one Redis."""

    def __init__(
        self, settings: Settings, redis: Redis, keys: Keys, policy: WebhookPolicy | None = None
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.policy = policy or WebhookPolicy()
        self._claim = redis.register_script(_CLAIM)
        self._set_if_exists = redis.register_script(_SET_IF_EXISTS)

    def run(self, stop: threading.Event, max_s: float | None = None, drain: bool = False) -> int:
        """Deliver until `stop` is set, `max_s` passed, or (`drain`) nothing is queued;
        returns how many attempts were made."""
        deadline = None if max_s is None else time.monotonic() + max_s
        attempts = 0
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                done, next_due = self.deliver_due()
            except Exception:
                log.exception("webhook deliverer: Redis failed; retrying in 1 s")
                stop.wait(1.0)
                continue
            attempts += done
            if done == 0 and drain and next_due is None:
                break
            if done == 0:
                self._idle(next_due)
        return attempts

    def deliver_due(self, limit: int = 100) -> tuple[int, float | None]:
        """Send up to `limit` due deliveries; (how many were sent, when the next is due)."""
        sent = 0
        while sent < limit:
            now = time.time()
            delivery_id, data, next_due = self._claim(
                keys=[self.keys.webhook_due(), self.keys.webhook_deliveries()],
                args=[repr(now), repr(now + self.policy.lease_s)],
            )
            if not delivery_id:
                return sent, float(next_due) if next_due else None
            self.deliver(json.loads(data))
            sent += 1
        return sent, time.time()

    def _idle(self, next_due: float | None) -> None:
        wait = 1.0 if next_due is None else min(max(next_due - time.time(), 0.01), 1.0)
        self.redis.blpop([self.keys.webhook_wake()], timeout=wait)

    def deliver(self, delivery: dict[str, Any]) -> Attempt:
        """One attempt at one claimed delivery, recorded and settled."""
        job = self._job(delivery["job"])
        if job is None or not job.get("url"):
            self._settle(delivery["id"])  # the job expired: nobody to tell
            return Attempt(None, "job expired", retry=False)
        attempt = self._attempt(delivery, job)
        number = int(delivery["attempt"]) + 1
        retry = attempt.retry and number < self.policy.max_attempts
        record = {
            "url": job["url"],
            "event": delivery["event"],
            "attempts": number,
            "last_status": attempt.status,
            "last_error": attempt.error,
            "state": "delivered" if attempt.delivered else "retrying" if retry else "failed",
            "last_attempt_at": time.time(),
        }
        if attempt.delivered:
            record["delivered_at"] = time.time()
        if retry:
            record["next_attempt_at"] = time.time() + self.policy.delay(number)
        self._set_if_exists(
            keys=[self.keys.job(delivery["job"])], args=["webhook", json.dumps(record)]
        )
        if retry:
            self._reschedule(delivery | {"attempt": number}, record["next_attempt_at"])
        else:
            self._settle(delivery["id"])
        return attempt

    def _attempt(self, delivery: dict[str, Any], job: dict[str, Any]) -> Attempt:
        body = json.dumps(_payload(delivery, job, self.settings), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "darkroom-webhooks/1",
            "Darkroom-Delivery": delivery["id"],
            "Darkroom-Event": delivery["event"],
        }
        if job.get("secret"):
            headers[SIGNATURE_HEADER] = sign(job["secret"], int(time.time()), body)
        try:
            status = post(job["url"], body, headers, self.settings, self.policy.timeout_s)
        except InputInvalid as exc:
            return Attempt(None, exc.message, retry=False)
        except (OSError, http.client.HTTPException, JobError) as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}", retry=True)
        if 200 <= status < 300:
            return Attempt(status, None, retry=False)
        if 300 <= status < 400:
            return Attempt(status, "redirects are not followed; give the final URL", False)
        return Attempt(status, f"HTTP {status}", status in RETRY_STATUSES or status >= 500)

    def _job(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        job = json.loads(data.get("job", "{}"))
        secret = None
        if data.get("api_key"):
            found = self.redis.hget(self.keys.api_key(data["api_key"]), WEBHOOK_SECRET_FIELD)
            secret = _text(found) if found else None
        return data | {"url": job.get("webhook"), "secret": secret}

    def _reschedule(self, delivery: dict[str, Any], due: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.webhook_deliveries(), delivery["id"], json.dumps(delivery))
        pipe.zadd(self.keys.webhook_due(), {delivery["id"]: due})
        pipe.execute()

    def _settle(self, delivery_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.keys.webhook_due(), delivery_id)
        pipe.hdel(self.keys.webhook_deliveries(), delivery_id)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _payload(delivery: dict[str, Any], job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What the receiver gets: the event and the job as `GET /v1/jobs/{id}` shows it."""
    error = (
        {"code": job["error_code"], "message": job.get("error_message", "")}
        if job.get("error_code")
        else None
    )
    stamps = ("queued_at", "running_at", "succeeded_at", "failed_at", "canceled_at")
    return {
        "id": delivery["id"],
        "type": delivery["event"],
        "created_at": time.time(),
        "data": {
            "id": job.get("id", delivery["job"]),
            "state": job.get("state"),
            "batch": job.get("batch") or None,
            "output": job.get("output"),
            "error": error,
            "timestamps": {s: float(job[s]) for s in stamps if job.get(s)},
        },
    }


def start_thread(settings: Settings, redis: Redis, keys: Keys) -> tuple[threading.Thread, Any]:
    """A daemon thread running a deliverer (the API process's); returns it and its stop."""
    stop = threading.Event()
    deliverer = Deliverer(settings, redis, keys)
    thread = threading.Thread(target=deliverer.run, args=(stop,), name="webhooks", daemon=True)
    thread.start()
    return thread, stop


# -- `darkroom webhooks` ---------------------------------------------------------------


@click.group()
def webhooks() -> None:
    """Deliver job webhooks."""


@webhooks.command()
@click.option("--max-seconds", type=click.FloatRange(min=0), help="stop after S seconds")
@click.option("--drain", is_flag=True, help="stop once no delivery is queued")
def serve(max_seconds: float | None, drain: bool) -> None:
    """Send due webhook deliveries until stopped (SIGTERM / Ctrl-C)."""
    from jobs.broker import connect
    from jobs.settings import load_settings

    settings = load_settings()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    deliverer = Deliverer(settings, connect(settings), Keys(settings.key_prefix))
    click.echo("darkroom webhooks: delivering", err=True)
    attempts = deliverer.run(stop, max_s=max_seconds, drain=drain)
    click.echo(f"darkroom webhooks: stopped after {attempts} attempts", err=True)


@webhooks.command()
def pending() -> None:
    """How many deliveries are queued, and when the next is due."""
    from jobs.broker import connect
    from jobs.settings import load_settings

    settings = load_settings()
    redis, keys = connect(settings), Keys(settings.key_prefix)
    count = redis.zcard(keys.webhook_due())
    first = redis.zrange(keys.webhook_due(), 0, 0, withscores=True)
    when = f", next due in {max(0.0, float(first[0][1]) - time.time()):.1f} s" if first else ""
    click.echo(f"{count} deliveries pending{when}")
