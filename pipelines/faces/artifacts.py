"""Where published model files come from: the seam between ops and the model store.

Ops ask for a published artifact by `name@version` or alias and get back a local file
or folder, through `OpContext.models` (a `pipelines.base.ModelSource`: the worker's
resident models on a worker). `FolderModels` serves a plain folder
(`<root>/<name>/<version>/...` or `<root>/<name>/...`) for local runs and tests.
"""

from __future__ import annotations

from pathlib import Path

from jobs.errors import ModelUnavailable
from jobs.schema import Lane
from pipelines.base import ModelFiles


class FolderModels:
    """Artifacts laid out in a folder: `<root>/<name>/<version>` or `<root>/<name>`.

    A `ModelSource` of files only: it loads no pipelines.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, ref: str) -> Path:
        """`<root>/<name>/<version>` if there, else `<root>/<name>`.

        Raises:
            ModelUnavailable: neither folder exists.
        """
        name, _, version = ref.partition("@")
        candidates = [self.root / name / version] if version else []
        candidates.append(self.root / name)
        for path in candidates:
            if path.exists():
                return path
        raise ModelUnavailable(f"model {ref!r} is not published under {self.root}")

    def get(self, ref: str, lane: Lane | str = Lane.FINAL) -> object:
        """Never a pipeline: a folder of files has no model cache.

        Raises:
            ModelUnavailable: always.
        """
        raise ModelUnavailable(
            f"model {ref!r} needs a worker with a model cache; {self.root} only holds files"
        )


def model_files(models: ModelFiles | None, ref: str, purpose: str) -> ModelFiles:
    """`models` (from `OpContext.models`), checked to be there.

    Raises:
        ModelUnavailable: `models` is None; the message names `ref` and `purpose`.
    """
    if models is None:
        raise ModelUnavailable(
            f"{purpose} needs the published model {ref!r}, and this worker has no model "
            "store to pull it from; publish it with `darkroom models publish` and run the "
            "worker with a model store"
        )
    return models


def published_file(models: ModelFiles | None, ref: str, purpose: str, suffix: str) -> Path:
    """The one `*<suffix>` file of the published model `ref` (or `ref`'s file itself).

    Raises:
        ModelUnavailable: no model source, `ref` is not published, or it does not hold
            exactly one `*<suffix>` file; the message names `purpose`.
    """
    return single_file(model_files(models, ref, purpose).local_path(ref), suffix, ref)


def single_file(path: Path, suffix: str, ref: str) -> Path:
    """`path` itself if a file, else the one `*<suffix>` file in the folder.

    Raises:
        ModelUnavailable: the folder holds no or several `*<suffix>` files.
    """
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{suffix}"))
    if len(found) != 1:
        raise ModelUnavailable(
            f"model {ref!r} at {path} should hold exactly one {suffix} file, found {len(found)}"
        )
    return found[0]
