"""The notice a worker gives when a job finishes (written by `jobs.notices`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jobs.keys import Keys
from jobs.notices import announce_finish
from jobs.states import JobState

if TYPE_CHECKING:
    from redis import Redis

    from jobs.schema import Job

log = logging.getLogger(__name__)


def job_finished(redis: Redis, keys: Keys, job: Job, state: JobState) -> None:
    """Announce a terminal state and queue the job's webhook. Logs, never raises: the
    job's state is already recorded, and a lost notice must not fail it."""
    try:
        announce_finish(redis, keys, job.id, state, webhook=bool(job.webhook))
    except Exception:
        log.exception("job %s: could not announce %s or queue its webhook", job.id, state)
