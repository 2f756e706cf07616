"""The running attempt's side of `transport.attempts`: keep the lease, fence the writes.

A `Lease` thread renews the attempt's lease and writes its latest progress, so the
render itself never waits on Redis: while Redis is away the render goes on, its progress
and cancel checks simply see nothing new, and what must reach Redis (the ownership check
before the output is written, the final state) waits for it up to
`settings.retry_budget_s`, the budget a storage outage gets. A lost connection is not
the job's fault, so it never fails the job `internal`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.errors import DarkroomError, JobCanceled, JobError
from transport.attempts import Attempt, Attempts, Ownership

log = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class AttemptLost(DarkroomError):
    """This attempt no longer owns its job (its lease ran out and another attempt took
    it): it must write nothing more. Control flow, not a job failure."""


class RedisUnreachable(JobError):
    """Redis stayed unreachable longer than the retry budget."""

    retryable = True


def patiently(call: Callable[[], T], budget_s: float, what: str) -> T:
    """`call()`, retried with backoff (0.5 s doubling to 5 s) while Redis is unreachable,
    for up to `budget_s` seconds. Raises `RedisUnreachable` after that."""
    deadline = time.monotonic() + budget_s
    pause = 0.5
    while True:
        try:
            return call()
        except REDIS_DOWN as exc:
            if time.monotonic() + pause > deadline:
                raise RedisUnreachable(f"Redis unreachable for over {budget_s:.0f} s") from exc
            log.warning("%s: Redis unreachable (%s); retrying in %.1f s", what, exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


class Lease:
    """Renews `attempt`'s lease every `every_s` seconds in a thread, writing progress
    with it; `lost` / `cancel_requested` say what the last renewal found."""

    def __init__(self, attempts: Attempts, attempt: Attempt, every_s: float, budget_s: float):
        self.attempts = attempts
        self.attempt = attempt
        self.every_s = every_s
        self.budget_s = budget_s
        self.lost = False
        self.cancel_requested = False
        self._progress: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="darkroom-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s * 2 + 1)

    def progress(self, fraction: float) -> None:
        """Remember the latest progress (0..1); the next renewal writes it."""
        self._progress = fraction

    def should_stop(self) -> bool:
        """True once the attempt lost its job or a cancel of it was asked."""
        return self.lost or self.cancel_requested

    def confirm(self) -> None:
        """Before a write that others see (the output): renew now, waiting out a Redis
        outage. Raises `AttemptLost`, `JobCanceled`, or `RedisUnreachable`."""
        found = patiently(lambda: self.attempts.renew(self.attempt), self.budget_s, "lease")
        self._note(found)
        if self.lost:
            raise AttemptLost(f"job {self.attempt.job_id}: another attempt holds it now")
        if self.cancel_requested:
            raise JobCanceled("canceled while rendering; the output was not written")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s) and not self.lost:
            try:
                self._note(self.attempts.renew(self.attempt))
                if self._progress is not None and not self.lost:
                    self.attempts.progress(self.attempt, self._progress)
            except Exception as exc:  # a Redis outage: keep rendering, try again
                log.warning("job %s: lease renewal failed (%s)", self.attempt.job_id, exc)

    def _note(self, found: Ownership) -> None:
        if found is Ownership.LOST and not self.lost:
            log.warning("job %s: attempt %s lost its lease", self.attempt.job_id, self.attempt.id)
        self.lost = self.lost or found is Ownership.LOST
        self.cancel_requested = found is Ownership.CANCEL_REQUESTED
