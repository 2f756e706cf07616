"""Job state in Redis: one hash per job with a TTL, per-batch counters.

Every state change is one Lua script, so the state, its timestamp and the batch
counters move together, and a change the lifecycle forbids (a finished job started
again, say) is refused by Redis itself, whatever races the workers run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict
from redis.exceptions import WatchError

from jobs.errors import DarkroomError
from jobs.schema import Job
from jobs.states import TRANSITIONS, ErrorCode, JobState
from transport import dead_letters
from transport.keyspace import Keyspace
from transport.messages import priority_list, render_message

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

_ENQUEUE = """
local cur = redis.call('HGET', KEYS[1], 'state')
if cur and cur ~= 'failed' and cur ~= 'canceled' then return cur end
local has_batch = ARGV[4] == '1'
if cur then
  redis.call('HDEL', KEYS[1], 'error_code', 'error_message', 'worker', 'progress', 'output',
             'result', 'cancel_requested', 'running_at', 'retrying_at', 'failed_at',
             'incarnation', 'retries', 'first_retry_at', 'attempt', 'pid',
             'canceled_at')
  if has_batch then redis.call('HINCRBY', KEYS[2], cur, -1) end
elseif has_batch then
  redis.call('HINCRBY', KEYS[2], 'total', 1)
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at', ARGV[1], 'updated_at', ARGV[1],
           unpack(ARGV, 7))
redis.call('HSETNX', KEYS[1], 'attempts', 0)
redis.call('EXPIRE', KEYS[1], ARGV[2])
if has_batch then
  redis.call('HINCRBY', KEYS[2], 'queued', 1)
  redis.call('HSET', KEYS[3], ARGV[6], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
redis.call('LPUSH', KEYS[4], ARGV[3])
if cur then return 'requeued' end
return 'new'
"""

_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {0, ''} end
local allowed = false
for from in string.gmatch(ARGV[2], '[^,]+') do
  if from == cur then allowed = true end
end
if not allowed then return {0, cur} end
-- Fenced: only the attempt that owns the job may move it (a zombie may not).
if ARGV[7] ~= '' and (cur ~= 'running' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[7]) then
  return {0, 'superseded'}
end
if ARGV[8] == '1' and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  return {0, 'cancel_requested'}
end
local to = ARGV[1]
redis.call('HSET', KEYS[1], 'state', to, to .. '_at', ARGV[3], 'updated_at', ARGV[3])
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
if #ARGV > 8 then redis.call('HSET', KEYS[1], unpack(ARGV, 9)) end
if to ~= 'running' then redis.call('DEL', KEYS[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
-- The registry of started jobs: a sweep finds running jobs whose worker lost them.
local id = redis.call('HGET', KEYS[1], 'id')
if id then
  if to == 'running' then redis.call('SADD', KEYS[2], id) else redis.call('SREM', KEYS[2], id) end
end
-- The batch comes from the job's own record, so no caller can move the wrong counters.
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch and batch ~= '' and cur ~= to then
  local counters = ARGV[6] .. batch
  redis.call('HINCRBY', counters, cur, -1)
  redis.call('HINCRBY', counters, to, 1)
end
return {1, cur}
"""


class TransitionRefused(DarkroomError):
    """The job is missing, or its state does not allow the change."""

    def __init__(self, job_id: str, current: str | None, wanted: JobState) -> None:
        self.current = JobState(current) if current else None
        where = f"it is {current}" if current else "it does not exist (expired?)"
        super().__init__(f"job {job_id} cannot become {wanted}: {where}")


class AttemptSuperseded(TransitionRefused):
    """A fenced write by an attempt that no longer owns the job (another attempt does)."""

    def __init__(self, job_id: str, wanted: JobState) -> None:
        self.current = None
        DarkroomError.__init__(
            self, f"job {job_id} cannot become {wanted}: this attempt no longer owns it"
        )


class CancelPending(TransitionRefused):
    """A job asked to succeed while a cancel of it was pending."""

    def __init__(self, job_id: str, wanted: JobState) -> None:
        self.current = JobState.RUNNING
        DarkroomError.__init__(self, f"job {job_id} cannot become {wanted}: it was canceled")


class JobRecord(BaseModel):
    """What Redis knows of a job, as `darkroom status` and the API show it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    state: JobState
    queue: str | None = None
    batch: str | None = None
    source: str | None = None
    input: str | None = None
    attempts: int = 0
    worker: str | None = None
    progress: float | None = None
    output: str | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    created_at: float | None = None
    queued_at: float | None = None
    running_at: float | None = None
    succeeded_at: float | None = None
    failed_at: float | None = None
    canceled_at: float | None = None
    retrying_at: float | None = None
    incarnation: str | None = None
    """Which start of `worker` runs it: a worker restarted under its own name is another."""
    pid: int | None = None
    """Process id of the attempt's render (on the worker's host)."""
    attempt: str | None = None
    """Id of the attempt that runs (or last ran) the job: the fencing token of its writes."""
    retries: int = 0
    """Deliberate re-sends (out of memory, storage outage); they are not crash attempts."""
    first_retry_at: float | None = None
    cancel_requested: bool = False
    result: dict[str, Any] | None = None
    forwarded_to: str | None = None
    """The worker the job was sent to because its model was warm there (at most once)."""

    @property
    def finished_at(self) -> float | None:
        return self.succeeded_at or self.failed_at or self.canceled_at

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> JobRecord:
        data: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items() if _text(k) != "job"}
        if "result" in data:
            data["result"] = json.loads(data["result"])
        return cls.model_validate({k: v for k, v in data.items() if v != ""})


@dataclass
class EnqueueReport:
    new: int = 0
    requeued: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        return self.new + self.requeued


@dataclass(frozen=True)
class Submission:
    """One job ready to enqueue: where it goes and what the user called its source."""

    job: Job
    queue: str
    source: str = ""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _allowed_from(to: JobState) -> str:
    return ",".join(s for s, nxt in TRANSITIONS.items() if to in nxt)


def _flatten(fields: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value)
        out += [key, str(value)]
    return out


class JobStore:
    def __init__(self, redis: Redis, keys: Keyspace | None = None, ttl_s: int = 7 * 24 * 3600):
        self.redis = redis
        self.keys = keys or Keyspace()
        self.ttl_s = ttl_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._transition = redis.register_script(_TRANSITION)

    # -- producer side -------------------------------------------------------------

    def enqueue(self, submissions: Iterable[Submission], chunk: int = 2000) -> EnqueueReport:
        """Record and queue jobs, pipelined; jobs already queued, running or done are skipped.

        State and message are written by one script per job: a job is never recorded
        as queued without its message, nor queued twice.
        """
        report = EnqueueReport()
        pending: list[Submission] = []
        for sub in submissions:
            pending.append(sub)
            if len(pending) >= chunk:
                self._enqueue_chunk(pending, report)
                pending = []
        if pending:
            self._enqueue_chunk(pending, report)
        return report

    def _enqueue_chunk(self, subs: Sequence[Submission], report: EnqueueReport) -> None:
        now = repr(time.time())
        pipe = self.redis.pipeline(transaction=False)
        for sub in subs:
            job = sub.job
            batch = job.batch or ""
            payload = job.model_dump(mode="json", by_alias=True)
            message = render_message(job.id, payload, sub.queue, job.priority)
            fields = {
                "id": job.id,
                "queue": sub.queue,
                "batch": batch,
                "source": sub.source or job.input,
                "input": job.input,
                "created_at": repr(job.created_at),
                "job": json.dumps(payload),
            }
            self._enqueue(
                keys=[
                    self.keys.job(job.id),
                    self.keys.batch(batch),
                    self.keys.batch_jobs(batch),
                    priority_list(sub.queue, job.priority),
                ],
                args=[
                    now,
                    self.ttl_s,
                    message,
                    "1" if batch else "0",
                    sub.source or job.input,
                    job.id,
                    *_flatten(fields),
                ],
                client=pipe,
            )
        batches = {s.job.batch for s in subs if s.job.batch}
        for name in batches:
            pipe.sadd(self.keys.batches(), name)
        for result in pipe.execute()[: len(subs)]:
            outcome = result.decode() if isinstance(result, bytes) else str(result)
            if outcome == "new":
                report.new += 1
            elif outcome == "requeued":
                report.requeued += 1
            else:
                report.skipped[outcome] = report.skipped.get(outcome, 0) + 1

    # -- worker side ---------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        attempt: bool = False,
        only_from: Iterable[JobState] | None = None,
        fence: str | None = None,
        unless_canceled: bool = False,
        **fields: Any,
    ) -> JobState:
        """Move a job to `to`; returns the state it left. Raises `TransitionRefused`.

        `only_from` narrows, for this call, the states the lifecycle allows leaving.
        `fence`: an attempt id; the change happens only while that attempt owns the job
        (else `AttemptSuperseded`). `unless_canceled`: refuse (`CancelPending`) if a
        cancel of the job is pending.
        """
        allowed = _allowed_from(to)
        if only_from is not None:
            allowed = ",".join(s.value for s in only_from if s.value in allowed.split(","))
        ok, previous = self._transition(
            keys=[self.keys.job(job_id), self.keys.running(), self.keys.lease(job_id)],
            args=[
                to.value,
                allowed,
                repr(time.time()),
                self.ttl_s,
                "1" if attempt else "0",
                self.keys.batch(""),
                fence or "",
                "1" if unless_canceled else "0",
                *_flatten(fields),
            ],
        )
        previous = previous.decode() if isinstance(previous, bytes) else previous
        if not ok:
            if previous == "superseded":
                raise AttemptSuperseded(job_id, to)
            if previous == "cancel_requested":
                raise CancelPending(job_id, to)
            raise TransitionRefused(job_id, previous or None, to)
        return JobState(previous)

    def running_ids(self) -> list[str]:
        """Ids in the registry of started jobs."""
        return [_text(m) for m in self.redis.smembers(self.keys.running())]

    def requeue_orphan(self, job_id: str, reason: str) -> bool:
        """Send a running job again from its stored payload if no live attempt holds it
        (its lease expired; checked atomically with the requeue)."""
        key, lease = self.keys.job(job_id), self.keys.lease(job_id)
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key, lease)
                state, queue, raw = (
                    _text(v) if v is not None else None
                    for v in pipe.hmget(key, "state", "queue", "job")
                )
                if state != "running" or pipe.exists(lease) or not queue or not raw:
                    return False
                job = Job.from_json(raw)
                pipe.multi()
                self._transition(
                    keys=[key, self.keys.running(), lease],
                    args=[
                        "retrying", "running", repr(time.time()), self.ttl_s, "0",
                        self.keys.batch(""), "", "0", "error_message", reason,
                    ],
                    client=pipe,
                )  # fmt: skip
                _send_again(pipe, job, queue)
                pipe.execute()
            except WatchError:
                return False
        return True

    def requeue_lost(self, job_id: str) -> bool:
        """Send a `queued` job's message again from its stored payload (its message was
        lost: `transport.lost`); False if it is no longer queued (checked atomically).

        Raises:
            redis.exceptions.ConnectionError: Redis is unreachable.
        """
        key = self.keys.job(job_id)
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                state, queue, raw = (
                    _text(v) if v is not None else None
                    for v in pipe.hmget(key, "state", "queue", "job")
                )
                if state != "queued" or not queue or not raw:
                    return False
                job = Job.from_json(raw)
                pipe.multi()
                _send_again(pipe, job, queue)
                pipe.execute()
            except WatchError:
                return False
        return True

    def dead_letter(self, job_id: str, payload: dict[str, Any], reason: str) -> None:
        """See `transport.dead_letters.dead_letter`."""
        dead_letters.dead_letter(self.redis, self.keys, self.ttl_s, job_id, payload, reason)

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest dead-letter entries, newest first."""
        return dead_letters.newest(self.redis, self.keys, count)

    def set_progress(self, job_id: str, fraction: float) -> None:
        self.redis.hset(self.keys.job(job_id), "progress", f"{fraction:.3f}")

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job now; ask a running one to stop at its next step."""
        try:
            self.transition(
                job_id,
                JobState.CANCELED,
                only_from=(JobState.QUEUED, JobState.RETRYING),
                error_code=ErrorCode.CANCELED.value,
                error_message="canceled before it started",
            )
        except TransitionRefused as refused:
            if refused.current is JobState.RUNNING:
                self.redis.hset(self.keys.job(job_id), "cancel_requested", "1")
        return self.get(job_id)

    # -- reading -------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(raw) if raw else None

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        return [JobRecord.from_hash(raw) if raw else None for raw in pipe.execute()]

    def states(self, job_ids: Sequence[str]) -> list[JobState | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id), "state")
        return [JobState(_text(s)) if s else None for s in pipe.execute()]

    def job(self, job_id: str) -> Job | None:
        raw = self.redis.hget(self.keys.job(job_id), "job")
        return Job.from_json(raw) if raw else None

    def batch_counts(self, name: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.keys.batch(name))
        counts = {state.value: 0 for state in JobState} | {"total": 0}
        counts.update({_text(k): int(v) for k, v in raw.items()})
        return counts

    def batch_members(self, name: str) -> dict[str, str]:
        """job id -> source of every job in the batch."""
        raw = self.redis.hgetall(self.keys.batch_jobs(name))
        return {_text(k): _text(v) for k, v in raw.items()}


def _send_again(pipe: Pipeline, job: Job, queue: str) -> None:
    """Queue `job`'s render message again, at the front of its priority's line."""
    message = render_message(
        job.id, job.model_dump(mode="json", by_alias=True), queue, job.priority
    )
    pipe.rpush(priority_list(queue, job.priority), message)
