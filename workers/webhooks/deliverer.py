"""The deliverer: claims due deliveries, sends them, records and settles each attempt.

Own code, not Celery/RQ: leases, per-receiver limits and per-attempt job records fit here.

Attempts run concurrently on a pool of senders, at most `per_receiver` at once to one
receiver URL and `per_tenant` for one tenant's jobs, so a receiver that answers slowly
(or never) delays only its own deliveries, and no tenant takes every sender.

A delivery is claimed by pushing its score in `Keyspace.webhook_due()` to a lease
deadline (one Lua script, so two deliverers never take the same one); if its
deliverer dies, the lease runs out and it comes due again. 2xx settles it; 408, 429,
5xx, timeouts and connection errors reschedule it with exponential backoff until
`max_attempts`; anything else (a redirect included) fails it. Each attempt is written
to the job's hash as the `webhook` JSON field.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jobs.errors import InputInvalid, JobError
from transport.keyspace import WEBHOOK_SECRET_FIELD, Keyspace
from workers.webhooks.payload import payload
from workers.webhooks.senders import Senders
from workers.webhooks.sending import post
from workers.webhooks.signing import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from redis import Redis

    from jobs.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429})
BUSY_RECEIVER_WAIT_S = 0.5  # a delivery to a receiver at its limit is looked at again after

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


@dataclass(frozen=True)
class WebhookPolicy:
    max_attempts: int = 8
    base_delay_s: float = 2.0  # then 4, 8, 16 ... up to max_delay_s
    max_delay_s: float = 900.0
    timeout_s: float = 10.0
    lease_s: float = 60.0  # a claimed delivery comes due again after this if not settled
    senders: int = 16  # attempts in flight at once, per deliverer
    per_receiver: int = 2  # of which at most this many to one receiver URL
    per_tenant: int = 4  # and this many for one tenant's jobs, whatever their URLs

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
        self, settings: Settings, redis: Redis, keys: Keyspace, policy: WebhookPolicy | None = None
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.policy = policy or WebhookPolicy()
        self._claim = redis.register_script(_CLAIM)
        self._set_if_exists = redis.register_script(_SET_IF_EXISTS)
        self._senders = Senders(self.policy.per_receiver, self.policy.per_tenant)
        self._freed = threading.Event()

    def run(self, stop: threading.Event, max_s: float | None = None, drain: bool = False) -> int:
        """Deliver until `stop` is set, `max_s` passed, or (`drain`) nothing is queued;
        returns how many attempts were started. Attempts run on `policy.senders` threads,
        at most `policy.per_receiver` at once to one receiver URL."""
        deadline = None if max_s is None else time.monotonic() + max_s
        attempts = 0
        with ThreadPoolExecutor(self.policy.senders, thread_name_prefix="webhook") as pool:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                try:
                    started, next_due = self.dispatch_due(pool)
                except Exception:
                    log.exception("webhook deliverer: Redis failed; retrying in 1 s")
                    stop.wait(1.0)
                    continue
                attempts += started
                if started == 0 and drain and next_due is None and not self._senders.busy():
                    break
                if started == 0:
                    self._idle(next_due)
        return attempts

    def dispatch_due(self, pool: ThreadPoolExecutor) -> tuple[int, float | None]:
        """Hand due deliveries to free senders; (how many started, when the next is due).
        A delivery whose receiver already has `per_receiver` attempts open waits a moment
        in the queue, so a slow receiver delays only its own deliveries."""
        started = 0
        while self._senders.total() < self.policy.senders:
            now = time.time()
            delivery_id, data, next_due = self._claim(
                keys=[self.keys.webhook_due(), self.keys.webhook_deliveries()],
                args=[repr(now), repr(now + self.policy.lease_s)],
            )
            if not delivery_id:
                return started, float(next_due) if next_due else None
            delivery = json.loads(data)
            tenant, receiver = self._receiver(delivery["job"])
            if not self._senders.take(tenant, receiver):
                self.redis.zadd(self.keys.webhook_due(), {delivery_id: now + BUSY_RECEIVER_WAIT_S})
                continue
            pool.submit(self._send, delivery, tenant, receiver)
            started += 1
        return started, time.time()

    def deliver_due(self, limit: int = 100) -> tuple[int, float | None]:
        """Send up to `limit` due deliveries one after another, in this thread; (how many
        were sent, when the next is due)."""
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

    def _send(self, delivery: dict[str, Any], tenant: str, receiver: str) -> None:
        try:
            self.deliver(delivery)
        except Exception:  # the lease brings it back; the sender thread lives on
            log.exception("webhook delivery %s failed to record", delivery.get("id"))
        finally:
            self._senders.give(tenant, receiver)
            self._freed.set()

    def _receiver(self, job_id: str) -> tuple[str, str]:
        """(tenant, receiver URL without its query) of a job's webhook; '' for what is gone."""
        tenant, raw = self.redis.hmget(self.keys.job(job_id), ["tenant", "job"])
        try:
            url = json.loads(raw).get("webhook") if raw else None
        except ValueError:
            url = None
        parts = urlsplit(url) if url else None
        receiver = f"{parts.scheme}://{parts.netloc.lower()}{parts.path}" if parts else ""
        return (_text(tenant) if tenant else ""), receiver

    def _idle(self, next_due: float | None) -> None:
        wait = 1.0 if next_due is None else min(max(next_due - time.time(), 0.01), 1.0)
        if self._senders.total() >= self.policy.senders:
            self._freed.wait(wait)  # every sender busy: wait for one to finish
            self._freed.clear()
            return
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
        body = json.dumps(payload(delivery, job, self.settings), separators=(",", ":")).encode()
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


def start_thread(settings: Settings, redis: Redis, keys: Keyspace) -> tuple[threading.Thread, Any]:
    """A daemon thread running a deliverer (the API process's); returns it and its stop."""
    stop = threading.Event()
    deliverer = Deliverer(settings, redis, keys)
    thread = threading.Thread(target=deliverer.run, args=(stop,), name="webhooks", daemon=True)
    thread.start()
    return thread, stop
