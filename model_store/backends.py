"""Where published models live: a local folder or an S3 prefix, moved file by file.

Model files run to tens of GB, so both backends stream files to and from disk
(`upload` / `download`) instead of holding them in memory; small JSON documents
(manifests, aliases) go through `read` / `write`. Keys are '/'-separated paths
relative to the store's root, e.g. `flux/1/files/unet/config.json`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jobs.errors import StorageUnavailable
from model_store.folder import CHUNK, sha256_file

if TYPE_CHECKING:
    from jobs.settings import Settings


class Backend(Protocol):
    """The few operations the model store needs from a place that holds files."""

    uri: str

    def read(self, key: str) -> bytes | None: ...
    def write(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def keys(self, prefix: str = "") -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...
    def upload(self, key: str, path: Path) -> None: ...
    def download(self, key: str, path: Path) -> bool: ...
    def digest(self, key: str) -> tuple[str, int] | None: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad store key {key!r}")
    return key


class LocalBackend:
    """A folder. Every write lands in a hidden temp file first and is renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _temp_beside(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        temp = self._temp_beside(path)
        temp.write_bytes(data)
        os.replace(temp, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix.rstrip("/") if prefix.rstrip("/") else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(self.root)
            if path.is_file() and not any(p.startswith(".") for p in rel.parts):
                yield rel.as_posix()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop folders the delete left empty, so gc leaves no husks behind.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def upload(self, key: str, path: Path) -> None:
        target = self._path(key)
        temp = self._temp_beside(target)
        shutil.copyfile(path, temp)
        os.replace(temp, target)

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


_MISSING = ("404", "NoSuchKey", "NotFound")


@contextmanager
def _reachable(uri: str) -> Iterator[None]:
    """Turn transport failures into StorageUnavailable (retryable) naming the store."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise StorageUnavailable(f"model store {uri}: {exc}") from None
    except BotoCoreError as exc:
        raise StorageUnavailable(f"model store {uri} is unreachable: {exc}") from None


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _MISSING


class S3Backend:
    """An S3 prefix, through a boto3 client (transfers use boto3's managed multipart)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", sse: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.extra: dict[str, str] = {"ServerSideEncryption": sse} if sse else {}
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes | None:
        with _reachable(self.uri):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            except Exception as exc:
                if _missing(exc):
                    return None
                raise
            return bytes(body.read())

    def write(self, key: str, data: bytes) -> None:
        with _reachable(self.uri):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self.extra)

    def exists(self, key: str) -> bool:
        with _reachable(self.uri):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except Exception as exc:
                if _missing(exc):
                    return False
                raise
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix.rstrip("/") else self._root()
        strip = len(self._root())
        with _reachable(self.uri):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"])[strip:]

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def delete(self, key: str) -> None:
        with _reachable(self.uri):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def upload(self, key: str, path: Path) -> None:
        with _reachable(self.uri):
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=self.extra)

    def download(self, key: str, path: Path) -> bool:
        with _reachable(self.uri):
            try:
                self.client.download_file(self.bucket, self._key(key), str(path))
            except Exception as exc:
                if _missing(exc):
                    return False
                raise
            return True

    def digest(self, key: str) -> tuple[str, int] | None:
        with _reachable(self.uri):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            except Exception as exc:
                if _missing(exc):
                    return None
                raise
            digest, size = hashlib.sha256(), 0
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            return digest.hexdigest(), size


def open_backend(uri: str, settings: Settings) -> Backend:
    """The backend for a store URI: `s3://bucket/prefix`, `file:///dir` or a plain folder."""
    if uri.startswith("s3://"):
        from storage.s3 import s3_client

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"model store {uri!r} names no bucket")
        return S3Backend(s3_client(settings), bucket, prefix, settings.s3_sse)
    return LocalBackend(Path(uri.removeprefix("file://")))
