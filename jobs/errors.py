"""darkroom's error tree.

`DarkroomError` is the root. `JobError` and its subclasses end one job with an
`ErrorCode` and a message a user can act on; they never take the worker down.
`SchemaError` is raised at the boundary when a job, recipe or message does not
validate or decode.
"""

from jobs.states import ErrorCode


class DarkroomError(Exception):
    """Root of every error darkroom raises on purpose."""


class SchemaError(DarkroomError):
    """A job, recipe, step or queue message is malformed."""


class ConfigError(DarkroomError):
    """Settings, tiers or a recipe file are inconsistent."""


class JobError(DarkroomError):
    """A failure that ends one job with a code and a human message."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False
    retry_after_s: float | None = None
    """Seconds to wait before a retry, when whoever refused said so (else backoff)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputInvalid(JobError):
    code = ErrorCode.INPUT_INVALID


class InputTooLarge(JobError):
    code = ErrorCode.INPUT_TOO_LARGE


class FaceNotFound(JobError):
    code = ErrorCode.FACE_NOT_FOUND


class ModelUnavailable(JobError):
    code = ErrorCode.MODEL_UNAVAILABLE


class OutOfMemory(JobError):
    code = ErrorCode.OUT_OF_MEMORY
    retryable = True


class JobTimeout(JobError):
    code = ErrorCode.TIMEOUT


class JobCanceled(JobError):
    code = ErrorCode.CANCELED


class StorageUnavailable(JobError):
    """The store or the input server could not be reached; worth another attempt."""

    code = ErrorCode.INTERNAL
    retryable = True


class QuotaExceeded(JobError):
    """The hosted provider's quota, or darkroom's hosted spend cap, refused the job."""

    code = ErrorCode.QUOTA_EXCEEDED


class RefusedByProvider(JobError):
    """The hosted provider declined the edit (its safety filters); a retry gets the same."""

    code = ErrorCode.REFUSED_BY_PROVIDER


class BackToLocal(JobError):
    """A job spilled to the hosted tier that it cannot take now (spend cap, provider
    quota): it goes back to the GPU queue routing picks, rather than failing."""

    code = ErrorCode.QUOTA_EXCEEDED
    retryable = True


ERRORS_BY_CODE: dict[ErrorCode, type[JobError]] = {
    cls.code: cls
    for cls in (
        InputInvalid,
        InputTooLarge,
        FaceNotFound,
        ModelUnavailable,
        OutOfMemory,
        JobTimeout,
        JobCanceled,
        QuotaExceeded,
        RefusedByProvider,
    )
}
