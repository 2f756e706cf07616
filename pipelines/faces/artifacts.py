"""Where published model files come from: the seam between ops and the model store.

Ops ask for a published artifact by `name@version` or alias and get back a local file
or folder. `OpContext.models` may be anything with `local_path(ref)`, a
`model_store.ModelStore` (its verified pull-through cache), or the worker's resident
models (which hold the store as `.store`). `FolderModels` serves a plain folder
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


class StoreFiles:
    """`ModelFiles` over a model store: anything whose `pull(ref)` returns a `.path`."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def local_path(self, ref: str) -> Path:
        return Path(self.store.pull(ref).path)


def model_files(models: Any, ref: str, purpose: str) -> ModelFiles:
    """`models` (from `OpContext.models`) as a `ModelFiles`, or a `ModelUnavailable`
    that names `ref` and what it is for."""
    if models is not None:
        if isinstance(models, ModelFiles):
            return models
        store = getattr(models, "store", models)  # the worker's resident models hold one
        if callable(getattr(store, "pull", None)):
            return StoreFiles(store)
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
