"""Where published models live: a `storage.Storage` (local folder or S3 prefix).

Small JSON documents (manifests, aliases) go through the Storage API. Model files run
to tens of GB, so they move by streaming helpers instead of whole-bytes `put`/`get`:
a local store copies files directly, an S3 store uses boto3's managed (multipart)
`upload_file` / `download_file`. Keys are '/'-separated paths relative to the store's
root, e.g. `flux/1/files/unet/config.json`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jobs.errors import StorageUnavailable
from model_store.folder import CHUNK, sha256_file
from storage import LocalStorage, ObjectNotFound, Storage, open_location
from storage.local import TEMP_PREFIX

if TYPE_CHECKING:
    from jobs.settings import Settings


class Transfer(Protocol):
    """Moves whole files between disk and a store, and hashes stored files."""

    def upload(self, key: str, path: Path) -> None: ...
    def download(self, key: str, path: Path) -> bool: ...
    def digest(self, key: str) -> tuple[str, int] | None: ...


class LocalTransfer:
    """Plain file copies under the store's root; a copy lands under a temp name first."""

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage

    def _path(self, key: str) -> Path:
        return Path(self.storage.root) / key

    def upload(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(path, temp)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def download(self, key: str, path: Path) -> bool:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            return False
        return True

    def digest(self, key: str) -> tuple[str, int] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return sha256_file(path), path.stat().st_size


_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Transfer:
    """boto3's managed transfers on the S3Storage's own client, bucket and encryption."""

    def __init__(self, storage: Any) -> None:
        self.client = storage.client
        self.bucket: str = storage.bucket
        self.extra: dict[str, str] = {"ServerSideEncryption": storage.sse} if storage.sse else {}

    @contextmanager
    def _reachable(self, key: str) -> Iterator[None]:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}"
        try:
            yield
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise ObjectNotFound(f"not found: {where}") from None
            raise StorageUnavailable(f"S3 failed on {where}: {exc}") from None
        except (BotoCoreError, S3UploadFailedError) as exc:
            raise StorageUnavailable(f"S3 is unreachable for {where}: {exc}") from None

    def upload(self, key: str, path: Path) -> None:
        with self._reachable(key):
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=self.extra)

    def download(self, key: str, path: Path) -> bool:
        try:
            with self._reachable(key):
                self.client.download_file(self.bucket, key, str(path))
        except ObjectNotFound:
            return False
        return True

    def digest(self, key: str) -> tuple[str, int] | None:
        try:
            with self._reachable(key):
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                digest, size = hashlib.sha256(), 0
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except ObjectNotFound:
            return None
        return digest.hexdigest(), size


def transfer_for(storage: Storage) -> Transfer:
    """How model files move to and from `storage` (a local folder or an S3 bucket).

    Raises:
        TypeError: `storage` is neither a local folder nor S3.
    """
    if isinstance(storage, LocalStorage):
        return LocalTransfer(storage)
    from storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        return S3Transfer(storage)
    raise TypeError(f"no file transfer for {storage!r}")


class Backend:
    """The store's keys, under `prefix` of a Storage."""

    def __init__(self, storage: Storage, prefix: str = "") -> None:
        self.storage = storage
        self.prefix = prefix
        self.transfer = transfer_for(storage)
        # What error messages call the store: a folder path, or s3://bucket/prefix.
        if isinstance(storage, LocalStorage):
            self.uri = str(storage.root / prefix).rstrip("/")
        else:
            self.uri = storage.uri(prefix).rstrip("/")

    def read(self, key: str) -> bytes | None:
        try:
            return self.storage.get(self.prefix + key)
        except ObjectNotFound:
            return None

    def write(self, key: str, data: bytes) -> None:
        self.storage.put(self.prefix + key, data, "application/json")

    def exists(self, key: str) -> bool:
        return self.storage.exists(self.prefix + key)

    def walk(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix` (relative to the store), sorted."""
        for key in self.storage.list(self.prefix + prefix):
            yield key[len(self.prefix) :]

    def delete(self, key: str) -> None:
        self.storage.delete(self.prefix + key)
        if isinstance(self.storage, LocalStorage):
            _prune_empty(self.storage.root / (self.prefix + key), self.storage.root)

    def upload(self, key: str, path: Path) -> None:
        self.transfer.upload(self.prefix + key, path)

    def download(self, key: str, path: Path) -> bool:
        return self.transfer.download(self.prefix + key, path)

    def digest(self, key: str) -> tuple[str, int] | None:
        return self.transfer.digest(self.prefix + key)


def _prune_empty(path: Path, root: Path) -> None:
    # Drop folders a delete left empty, so gc leaves no husks behind.
    for parent in path.parents:
        if parent == root or not parent.is_relative_to(root):
            return
        try:
            parent.rmdir()
        except OSError:
            return


def open_backend(uri: str, settings: Settings) -> Backend:
    """The backend for a store URI: `s3://bucket/prefix`, `file:///dir` or a plain folder."""
    storage, prefix = open_location(uri, settings)
    return Backend(storage, prefix)
