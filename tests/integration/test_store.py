"""Job state in a real Redis: atomic enqueue, lifecycle rules, batch counters."""

from __future__ import annotations

import pytest
import redis

from jobs import Job, Recipe, Step
from jobs.states import ErrorCode, JobState
from transport.messages import priority_list
from transport.store import JobStore, Submission, TransitionRefused

pytestmark = pytest.mark.integration


def make_jobs(n: int, batch: str | None = "b1") -> list[Job]:
    recipe = Recipe(steps=[Step(op="denoise")])
    return [
        Job(id=f"job{i}", input=f"file:///in/{i}.jpg", recipe=recipe, batch=batch, priority=i % 10)
        for i in range(n)
    ]


def test_enqueue_writes_state_and_message_together(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    jobs = make_jobs(20)
    report = store.enqueue(Submission(j, "cpu.final", f"src{j.id}") for j in jobs)
    assert report.new == 20
    assert sum(redis_client.llen(priority_list("cpu.final", p)) for p in range(10)) == 20
    assert redis_client.llen(priority_list("cpu.final", 3)) == 2
    record = store.get("job3")
    assert record is not None and record.state is JobState.QUEUED and record.source == "srcjob3"
    assert store.batch_counts("b1")["queued"] == 20
    assert len(store.batch_members("b1")) == 20


def test_resubmission_skips_live_and_finished_jobs_and_requeues_failed(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    jobs = make_jobs(4)
    store.enqueue(Submission(j, "cpu.final") for j in jobs)
    store.transition("job0", JobState.RUNNING, attempt=True, worker="w")
    store.transition("job0", JobState.SUCCEEDED, output="file:///o/0.webp")
    store.transition("job1", JobState.RUNNING, attempt=True, worker="w")
    store.transition("job1", JobState.FAILED, error_code="input_invalid", error_message="bad")
    report = store.enqueue(Submission(j, "cpu.final") for j in jobs)
    assert (report.new, report.requeued) == (0, 1)
    assert report.skipped == {"succeeded": 1, "queued": 2}
    requeued = store.get("job1")
    assert requeued is not None and requeued.state is JobState.QUEUED
    assert requeued.error_code is None and requeued.attempts == 1
    counts = store.batch_counts("b1")
    assert (counts["total"], counts["queued"], counts["succeeded"], counts["failed"]) == (
        4,
        3,
        1,
        0,
    )


def test_lifecycle_refuses_impossible_transitions(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.enqueue([Submission(make_jobs(1)[0], "cpu.final")])
    with pytest.raises(TransitionRefused, match="it is queued"):
        store.transition("job0", JobState.SUCCEEDED)
    store.transition("job0", JobState.RUNNING, attempt=True, worker="w1")
    store.transition("job0", JobState.RUNNING, attempt=True, worker="w2")
    store.transition("job0", JobState.SUCCEEDED, output="file:///x.webp", result={"width": 3})
    with pytest.raises(TransitionRefused, match="it is succeeded"):
        store.transition("job0", JobState.RUNNING)
    with pytest.raises(TransitionRefused, match="does not exist"):
        store.transition("nope", JobState.RUNNING)
    record = store.get("job0")
    assert record is not None
    assert record.attempts == 2 and record.worker == "w2" and record.result == {"width": 3}
    assert record.queued_at and record.running_at and record.succeeded_at
    assert record.queued_at <= record.running_at <= record.succeeded_at
    assert store.batch_counts("b1")["succeeded"] == 1
    assert store.batch_counts("b1")["running"] == 0


def test_cancel_queued_now_and_running_at_next_step(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    a, b = make_jobs(2)
    store.enqueue([Submission(a, "cpu.final"), Submission(b, "cpu.final")])
    canceled = store.cancel(a.id)
    assert canceled is not None and canceled.state is JobState.CANCELED
    assert canceled.error_code is ErrorCode.CANCELED
    store.transition(b.id, JobState.RUNNING, attempt=True, worker="w")
    assert store.batch_counts("b1")["canceled"] == 1
    assert store.batch_counts("b1")["queued"] == 0
    running = store.cancel(b.id)
    assert running is not None and running.state is JobState.RUNNING and running.cancel_requested


def test_job_state_expires(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=100)
    store.enqueue([Submission(make_jobs(1, batch=None)[0], "cpu.final")])
    assert 0 < redis_client.ttl(store.keys.job("job0")) <= 100
