"""The notice a worker gives when a job finishes (written by `transport.notices`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jobs.states import JobState
from transport.keyspace import Keyspace
from transport.notices import announce_finish

if TYPE_CHECKING:
    from redis import Redis

    from jobs.schema import Job

log = logging.getLogger(__name__)


def job_finished(redis: Redis, keys: Keyspace, job: Job, state: JobState) -> None:
    """Announce a terminal state and queue the job's webhook. Logs, never raises: the
    job's state is already recorded, and a lost notice must not fail it."""
    try:
        announce_finish(redis, keys, job.id, state, webhook=bool(job.webhook))
    except Exception:
        log.exception("job %s: could not announce %s or queue its webhook", job.id, state)
