"""Where published model files come from: the seam between ops and the model store.

A worker hands ops an object with `local_path(ref)` in `OpContext.models` (the model
store's pull-through cache); ops ask it for a published artifact by `name@version`
or alias and get back a local file or folder. `FolderModels` serves a plain folder
(`<root>/<name>/<version>/...` or `<root>/<name>/...`) for local runs and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from jobs.errors import ModelUnavailable


@runtime_checkable
class ModelFiles(Protocol):
    """A source of published model artifacts."""

    def local_path(self, ref: str) -> Path:
        """The local file or folder of `ref`; raises `ModelUnavailable` if unpublished."""
        ...


class FolderModels:
    """Artifacts laid out in a folder: `<root>/<name>/<version>` or `<root>/<name>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, ref: str) -> Path:
        name, _, version = ref.partition("@")
        candidates = [self.root / name / version] if version else []
        candidates.append(self.root / name)
        for path in candidates:
            if path.exists():
                return path
        raise ModelUnavailable(f"model {ref!r} is not published under {self.root}")


def model_files(models: Any, ref: str, purpose: str) -> ModelFiles:
    """`models` (from `OpContext.models`) as a `ModelFiles`, or a `ModelUnavailable`
    that names `ref` and what it is for."""
    if isinstance(models, ModelFiles):
        return models
    raise ModelUnavailable(
        f"{purpose} needs the published model {ref!r}, and this worker has no model "
        "store to pull it from; publish it with `darkroom models publish` and run the "
        "worker with a model store"
    )


def single_file(path: Path, suffix: str, ref: str) -> Path:
    """`path` itself if a file, else the one `*<suffix>` file in the folder."""
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{suffix}"))
    if len(found) != 1:
        raise ModelUnavailable(
            f"model {ref!r} at {path} should hold exactly one {suffix} file, found {len(found)}"
        )
    return found[0]
