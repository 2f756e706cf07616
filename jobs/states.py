"""Job lifecycle states and the error codes a failed job carries."""

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})

# Which state may follow which. A redelivered job (its worker died) goes
# running -> running with one more attempt; a resubmitted failed job goes back to queued.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # queued -> failed: the API's intake refused an input it fetched (too large, invalid).
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.CANCELED, JobState.QUEUED, JobState.FAILED}
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.RUNNING,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.RETRYING,
            JobState.CANCELED,
        }
    ),
    JobState.RETRYING: frozenset({JobState.RUNNING, JobState.CANCELED, JobState.FAILED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.CANCELED: frozenset({JobState.QUEUED}),
}


class ErrorCode(StrEnum):
    INPUT_INVALID = "input_invalid"
    INPUT_TOO_LARGE = "input_too_large"
    FACE_NOT_FOUND = "face_not_found"
    MODEL_UNAVAILABLE = "model_unavailable"
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    INTERNAL = "internal"
    # The hosted backend (Nano Banana): its quota or darkroom's spend cap, its safety refusal.
    QUOTA_EXCEEDED = "quota_exceeded"
    REFUSED_BY_PROVIDER = "refused_by_provider"
