"""Waking requests when a job finishes, without polling.

A worker publishes `<job id> <state>` on `Keyspace.job_events()` as soon as it records a
terminal state (`workers.webhooks.job_finished`). Each API process holds one
subscription and sets the `asyncio.Event` of every request waiting on that job; a
waiter re-reads the job's hash when woken, and at least once a second anyway, so a
dropped subscription costs latency, never a wrong answer.

Everything here reads through `JobEvents.read`, on a connection pool of its own, so
however many streams and waits are open, the request path (`POST /v1/jobs`, `/healthz`)
keeps its connections.

Jobs the API ends itself (a queued job canceled by `DELETE`, or one past its
`cancel_after`) are announced with the same `transport.notices.announce_finish` workers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from jobs.states import JobState
from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis.asyncio import Redis as AsyncRedis

log = logging.getLogger(__name__)

SAFETY_RECHECK_S = 1.0
KEEPALIVE_S = 15.0  # proxies drop idle streams; an SSE comment line keeps them open


class JobEvents:
    """One pub/sub subscription per process, fanned out to waiting requests; and the
    reads those requests make, over their own pool (`reader`), one in flight per job."""

    def __init__(self, redis: AsyncRedis, keys: Keyspace, reader: AsyncRedis) -> None:
        self.redis = redis
        self.keys = keys
        self.reader = reader
        self._reads: dict[str, asyncio.Future[dict[Any, Any]]] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="job-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def read(self, key: str) -> dict[Any, Any]:
        """The job hash at `key`. Requests woken together by one finish share one read,
        so N streams on one job cost one Redis call, not N connections at once."""
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self.reader.hgetall(key))
            self._reads[key] = pending
            pending.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(pending)

    def _forget(self, key: str, done: asyncio.Future[dict[Any, Any]]) -> None:
        if self._reads.get(key) is done:
            del self._reads[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failed shared read is re-raised to each reader

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `job_id` may have finished; clear it before each read."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    async def _listen(self) -> None:
        while True:
            try:
                await self._subscribed_loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("job events subscription lost (%s); resubscribing", exc)
                self._wake_all()  # whatever finished meanwhile is read by the waiters
                await asyncio.sleep(0.5)

    async def _subscribed_loop(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.job_events())
            self.subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self._wake(message["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _wake(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        job_id = text.split(" ", 1)[0]
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


async def until_finished(
    events: JobEvents, key: str, job_id: str, timeout_s: float
) -> dict[Any, Any]:
    """The job's hash once it is terminal, or as it is when `timeout_s` runs out."""
    deadline = time.monotonic() + timeout_s
    with events.watch(job_id) as woken:
        while True:
            woken.clear()
            raw = await events.read(key)
            left = deadline - time.monotonic()
            if not raw or is_terminal(raw) or left <= 0:
                return raw
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(left, SAFETY_RECHECK_S))


async def changes(
    events: JobEvents,
    key: str,
    job_id: str,
    *,
    poll_s: float,
    max_s: float,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[dict[Any, Any] | None]:
    """The job's hash each time its state or progress changes, ending when it finishes
    (or after `max_s`); None after `keepalive_s` without a change, so the stream can
    show it is alive. Progress is read every `poll_s`; a finish wakes it at once."""
    deadline = time.monotonic() + max_s
    last: tuple[Any, Any] | None = None
    last_sent = time.monotonic()
    with events.watch(job_id) as woken:
        while time.monotonic() < deadline:
            woken.clear()
            raw = await events.read(key)
            seen = (raw.get(b"state"), raw.get(b"progress"))
            if seen != last or time.monotonic() - last_sent >= keepalive_s:
                yield raw if seen != last else None
                last, last_sent = seen, time.monotonic()
            if not raw or is_terminal(raw):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), poll_s)


def is_terminal(raw: dict[Any, Any]) -> bool:
    state = raw.get(b"state")
    return state is not None and JobState(state.decode()).terminal


class StreamSlots:
    """How many event streams each API key holds open in this process, under a cap."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def take(self, key_id: str) -> bool:
        if self._open.get(key_id, 0) >= self.per_key:
            return False
        self._open[key_id] = self._open.get(key_id, 0) + 1
        return True

    def give(self, key_id: str) -> None:
        left = self._open.get(key_id, 1) - 1
        if left > 0:
            self._open[key_id] = left
        else:
            self._open.pop(key_id, None)
