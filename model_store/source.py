"""Where a publish reads from: a local folder, or a model hub id downloaded first.

A hub id (`owner/name`, e.g. `black-forest-labs/FLUX.1-Kontext-dev`) is fetched with
`huggingface_hub.snapshot_download` into a folder, and then published like any
folder. This needs the hub to be reachable (and, for gated models, a token in
huggingface_hub's own configuration); CI and tests never reach one.
"""

from __future__ import annotations

import re
from pathlib import Path

from model_store.errors import SourceError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def is_hub_id(src: str) -> bool:
    return bool(HUB_ID.match(src)) and not Path(src).exists()


def local_source(src: str | Path, download_dir: Path, revision: str | None = None) -> Path:
    """A folder to publish: `src` itself, or the hub id `src` downloaded under `download_dir`.

    Raises:
        SourceError: `src` is a file, or neither a folder nor an owner/name hub id;
            or the download failed (see `download`).
    """
    path = Path(src).expanduser()
    if path.is_dir():
        return path.resolve()
    if isinstance(src, str) and is_hub_id(src):
        return download(src, download_dir, revision)
    if path.exists():
        raise SourceError(f"{src} is a file; publish the model's folder")
    raise SourceError(f"{src} is neither a folder nor a hub id (owner/name)")


def download(repo_id: str, download_dir: Path, revision: str | None = None) -> Path:
    """Fetch a hub snapshot; every failure becomes a SourceError saying what to do.

    Raises:
        SourceError: huggingface_hub is not installed, or the download failed.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise SourceError(
            f"publishing {repo_id} from the hub needs the huggingface_hub package; install "
            "it, or download the model on a machine with network and publish its folder"
        ) from None
    target = download_dir / repo_id.replace("/", "--")
    try:
        folder = snapshot_download(repo_id, revision=revision, local_dir=target)
    except Exception as exc:  # the hub client raises many unrelated types
        raise SourceError(
            f"could not download {repo_id} from the model hub ({type(exc).__name__}: {exc}); "
            "check the network and, for gated models, your hub token, or download it "
            "elsewhere and publish the folder"
        ) from None
    return Path(folder)
