"""Queueing a delivery, and the notice a worker gives when a job finishes.

`producer.api.events.announce` writes the same JSON to the same keys for jobs the API
ends itself; keep the two in step.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING

from jobs.keys import Keys
from jobs.states import JobState

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline

    from jobs.schema import Job

log = logging.getLogger(__name__)


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
