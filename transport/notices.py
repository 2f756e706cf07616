"""What is said when a job finishes: a pub/sub notice, and its webhook delivery queued.

Workers say it after recording a terminal state; the API says it for jobs it ends
itself (a cancel, a missed deadline). One writer, so the two never drift apart: the
API's waiters read `Keyspace.job_events()`, the webhook deliverer reads the queue.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

from jobs.states import JobState
from transport.keyspace import Keyspace

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline


def queue_webhook(client: Redis | Pipeline, keys: Keyspace, job_id: str, event: str) -> str:
    """Queue one delivery of `event` (e.g. `job.succeeded`) for `job_id`; its id."""
    delivery_id = uuid.uuid4().hex
    delivery = {"id": delivery_id, "job": job_id, "event": event, "attempt": 0}
    client.hset(keys.webhook_deliveries(), delivery_id, json.dumps(delivery))
    client.zadd(keys.webhook_due(), {delivery_id: time.time()})
    client.lpush(keys.webhook_wake(), "1")
    client.ltrim(keys.webhook_wake(), 0, 0)
    return delivery_id


def announce_finish(
    redis: Redis, keys: Keyspace, job_id: str, state: JobState, webhook: bool
) -> None:
    """Publish `<job id> <state>` and, if the job has a webhook, queue its delivery."""
    pipe = redis.pipeline(transaction=True)
    if webhook:
        queue_webhook(pipe, keys, job_id, f"job.{state.value}")
    pipe.publish(keys.job_events(), f"{job_id} {state.value}")
    pipe.execute()
