"""What a tenant may see of where its bytes live: its own URI forms, never server paths.

A local output root (`file:///srv/darkroom/out/`) is the server's business: results are
shown as the API path that serves them (`/v1/outputs/tenants/<t>/outputs/<id>.webp`) and
messages have the root (and the server's home and model store folders) cut out. An S3
location is shown as is: `s3://bucket/prefix/tenants/<t>/...` is how the tenant names its
own objects as inputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from jobs.settings import Settings

OUTPUTS_ROUTE = "/v1/outputs/"
SERVER_PATH = "<server path>"
_FILE_URI = re.compile(r"file://[^\s'\",)]*")


def output_root(settings: Settings) -> str:
    """The output location as a URI ending in '/': `file:///abs/dir/` or `s3://b/p/`."""
    out = settings.output
    if out.startswith("s3://"):
        return out.rstrip("/") + "/"
    if out.startswith("file://"):
        out = unquote(urlsplit(out).path)
    return Path(out).resolve().as_uri().rstrip("/") + "/"


def public_link(uri: str, settings: Settings) -> str | None:
    """How a tenant names a stored object: the s3:// URI, or the API path serving a local
    file under the output root; None for anything else."""
    root = output_root(settings)
    if uri.startswith("s3://"):
        return uri
    if root.startswith("file://") and uri.startswith(root):
        key = uri[len(root) :]
        return OUTPUTS_ROUTE + quote(key) if ".." not in key.split("/") else None
    return None


def redact(text: str, settings: Settings) -> str:
    """`text` without the server's local folders: the output root is cut (leaving the
    tenant-relative key), other local paths and file:// URIs become `<server path>`."""
    root = output_root(settings)
    if root.startswith("file://"):
        text = text.replace(root, "").replace(unquote(urlsplit(root).path), "")
    for folder in _server_folders(settings):
        text = text.replace(folder, SERVER_PATH)
    return _FILE_URI.sub(SERVER_PATH, text)


def _server_folders(settings: Settings) -> list[str]:
    folders = [settings.home.resolve(), settings.model_cache_dir().resolve()]
    store = settings.model_store_uri()
    if not store.startswith("s3://"):
        folders.append(Path(store).resolve())
    return sorted((str(f) for f in folders if str(f) != "/"), key=len, reverse=True)
