"""The model store's error tree.

`ModelStoreError` is for operators (publish, promote, rollback, gc): a bad name, a
refused overwrite, an alias with no history. A model a job needs but cannot get is
`jobs.errors.ModelUnavailable`, so the job fails with the `model_unavailable` code.
"""

from jobs.errors import DarkroomError


class ModelStoreError(DarkroomError):
    """Root of the model store's operator-facing errors."""


class VersionExists(ModelStoreError):
    """A different artifact is already published under this name@version."""


class AliasError(ModelStoreError):
    """An alias cannot be set or rolled back."""


class SourceError(ModelStoreError):
    """The folder or hub id given to publish cannot be read."""


class VariantRefused(ModelStoreError):
    """A variant scored worse at publish time than its gate allows; nothing was published."""
