"""The intake runner: fetch and vet held jobs' inputs, then put them on their queues.

One thread per API process claims due jobs tenant by tenant (round robin) and hands
each to a pool of fetchers, at most `settings.fetch_per_tenant` of one tenant's at once,
so a tenant whose URLs are slow waits on its own fetches only. For each job:

1. a concurrency slot of its tenant is reserved (a batch larger than the key's quota
   waits here, paced by the quota, instead of being refused);
2. the input is read under the key's byte cap (`https://` with `storage.fetch`'s SSRF
   rules and deadline; `s3://` objects of the tenant), vetted as an upload is (format by
   content, pixel cap from the header) and the recipe's output size checked against the
   key's pixel cap; a fetched URL is stored as the tenant's upload and the job reads that.
   The job's extra images (`extra_inputs`) go through the same fetch, caps and vetting,
   one by one, and a refusal names which extra input it was;
3. the job's message goes on its queue. A refused input fails the job (`input_too_large`,
   `input_invalid`) with its webhook; an unreachable or slow one is retried with backoff
   for `settings.fetch_budget_s`, then fails with `timeout`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from jobs.errors import InputInvalid, InputTooLarge, JobError
from jobs.schema import Job, Recipe
from jobs.states import ErrorCode, JobState
from producer.api.caps import check_output
from producer.api.errors import ApiError
from producer.api.inputs import vet_upload
from producer.api_keys import ApiKey
from storage import read_uri
from storage.fetch import fetch_https, shown
from transport.notices import announce_finish
from transport.store import TransitionRefused

if TYPE_CHECKING:
    from producer.api.context import ApiContext
    from transport.intake import Intake

log = logging.getLogger(__name__)

FETCHERS = 64  # fetches in flight per API process (threads waiting on sockets, cheap)
IDLE_S = 0.2  # how often an idle runner looks for jobs other processes staged
PACE_S = 1.0  # a tenant at its concurrency cap is looked at again after this
RETRY_MAX_S = 15.0
STOP_WAIT_S = 2.0


class IntakeRunner:
    """Claims held jobs and moves them to their queues (see the module docstring)."""

    def __init__(self, ctx: ApiContext, intake: Intake) -> None:
        self.ctx = ctx
        self.intake = intake
        self.settings = ctx.settings
        self.lease_s = 2 * self.settings.fetch_timeout_s + 30
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight: Counter[str] = Counter()
        self._paused: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        with ThreadPoolExecutor(FETCHERS, thread_name_prefix="intake") as pool:
            while not stop.is_set():
                try:
                    started = self.dispatch(pool)
                except Exception:
                    log.exception("intake: Redis failed; retrying in 1 s")
                    stop.wait(1.0)
                    continue
                if not started:
                    self.wake.wait(IDLE_S)
                    self.wake.clear()

    def dispatch(self, pool: ThreadPoolExecutor) -> int:
        """Hand due jobs to free fetchers, round robin over tenants; how many started."""
        started = 0
        for tenant in self.intake.tenants():
            if self._paused.get(tenant, 0.0) > time.monotonic():
                continue
            while self._free(tenant):
                job_id = self.intake.claim(tenant, self.lease_s)
                if job_id is None:
                    break
                with self._lock:
                    self._inflight[tenant] += 1
                pool.submit(self._handle, tenant, job_id)
                started += 1
        return started

    def _free(self, tenant: str) -> bool:
        with self._lock:
            total = sum(self._inflight.values())
            return self._inflight[tenant] < self.settings.fetch_per_tenant and total < FETCHERS

    def _handle(self, tenant: str, job_id: str) -> None:
        try:
            self.process(tenant, job_id)
        except Exception:  # the lease brings the job back; the fetcher lives on
            log.exception("intake: job %s failed unexpectedly", job_id)
        finally:
            with self._lock:
                self._inflight[tenant] -= 1
            self.wake.set()

    def process(self, tenant: str, job_id: str) -> None:
        """One claimed job: reserve, fetch and vet, publish (or fail, or try later)."""
        raw: dict[Any, Any] = self.ctx.redis.hgetall(self.ctx.keys.job(job_id))
        if raw.get(b"state") != b"queued" or b"job" not in raw:
            self.intake.drop(tenant, job_id)  # canceled, failed or expired meanwhile
            return
        job = Job.from_json(raw[b"job"])
        key = self._key(raw, tenant)
        # 1. a concurrency slot
        if not self._reserve(tenant, job_id, key):
            self._paused[tenant] = time.monotonic() + PACE_S
            self.intake.defer(tenant, job_id, time.time() + PACE_S)
            return
        # 2. the input and the extra images, under the key's caps
        try:
            source = self.fetch(job, key)
            extras = [self.fetch_extra(uri, n, key) for n, uri in enumerate(job.extra_inputs, 1)]
            job = job.model_copy(update={"input": source, "extra_inputs": extras})
        except JobError as exc:
            self._refused(tenant, job, raw, exc)
            return
        # 3. onto its queue
        queue = raw.get(b"queue", b"").decode()
        if not self.intake.publish(tenant, job, queue):
            log.info("intake: job %s left the queued state before it was published", job_id)

    def _key(self, raw: dict[Any, Any], tenant: str) -> ApiKey:
        key_id = raw.get(b"api_key", b"").decode()
        found = self.ctx.ring.get(key_id) if key_id else None
        return found or ApiKey(id=key_id, tenant=tenant)

    def _reserve(self, tenant: str, job_id: str, key: ApiKey) -> bool:
        active = self.ctx.keys.tenant_active(tenant)
        if self.ctx.redis.zscore(active, job_id) is not None:
            return True  # reserved when it was submitted
        return self.ctx.limits.reserve(tenant, [job_id], key.limits.concurrency) is None

    def fetch(self, job: Job, key: ApiKey) -> str:
        """The input the job should read: a fetched URL stored as the tenant's upload, or
        the tenant's s3:// object, once vetted. Raises `JobError`."""
        return self._vetted(job.input, key, job.tenant or key.tenant, job.recipe)

    def fetch_extra(self, uri: str, number: int, key: ApiKey) -> str:
        """Extra image `number` (from 1), as `fetch` does the input (no output-size check:
        an extra image does not set the output's size). Raises `JobError` naming it."""
        try:
            return self._vetted(uri, key, key.tenant, None)
        except JobError as exc:
            exc.message = f"extra input {number}: {exc.message}"  # keeps its code and retry
            raise

    def _vetted(self, uri: str, key: ApiKey, tenant: str, recipe: Recipe | None) -> str:
        if not uri.startswith(("https://", "s3://")):
            return uri  # file:// (admin keys): read by the worker, as from the CLI
        cap = key.limits.max_image_bytes or self.settings.max_input_bytes
        capped = self.settings.model_copy(update={"max_input_bytes": cap})
        data = fetch_https(uri, capped) if uri.startswith("https://") else read_uri(uri, capped)
        try:
            upload = vet_upload(data, key, self.settings, shown(uri))
        except ApiError as exc:
            error = InputTooLarge if exc.status == 413 else InputInvalid
            raise error(f"{shown(uri)}: {exc.message}") from None
        if recipe is not None:
            check_output(recipe, (upload.width, upload.height), key, self.settings)
        if uri.startswith("s3://"):
            return uri
        return self.ctx.outputs.store_upload(tenant, data, upload.format)

    def _refused(self, tenant: str, job: Job, raw: dict[Any, Any], exc: JobError) -> None:
        first = float(raw.get(b"fetch_first_at", b"0") or 0) or time.time()
        spent = time.time() - first
        if exc.retryable and spent < self.settings.fetch_budget_s:
            tries = int(raw.get(b"fetch_tries", b"0") or 0) + 1
            self.ctx.redis.hset(
                self.ctx.keys.job(job.id),
                mapping={"fetch_first_at": repr(first), "fetch_tries": str(tries)},
            )
            delay = min(2.0**tries, RETRY_MAX_S)
            self.intake.defer(tenant, job.id, time.time() + delay)
            return
        code = exc.code if not exc.retryable else ErrorCode.TIMEOUT
        message = exc.message
        if exc.retryable:
            message = f"input not fetched within {self.settings.fetch_budget_s:g} s: {message}"
        self._fail(tenant, job, code, message)

    def _fail(self, tenant: str, job: Job, code: ErrorCode, message: str) -> None:
        self.intake.drop(tenant, job.id)
        try:
            self.ctx.store.transition(
                job.id,
                JobState.FAILED,
                only_from=(JobState.QUEUED,),
                error_code=code.value,
                error_message=message,
            )
        except TransitionRefused:
            return  # canceled meanwhile
        announce_finish(
            self.ctx.redis, self.ctx.keys, job.id, JobState.FAILED, webhook=bool(job.webhook)
        )


def start_runner(ctx: ApiContext, intake: Intake) -> tuple[IntakeRunner, Callable[[], None]]:
    """The runner on a daemon thread; returns it and its stop (which waits a moment for
    fetches in flight; a job cut off comes due again when its lease ends)."""
    runner = IntakeRunner(ctx, intake)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), name="intake", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        runner.wake.set()
        thread.join(timeout=STOP_WAIT_S)

    return runner, halt
