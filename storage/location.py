"""From the URIs users write to stores and bytes.

A location is where outputs (or a model store) live: `./out`, `/abs/dir`,
`file:///abs/dir/` or `s3://bucket/prefix/`. An input is one object: `file:///a.jpg`,
`s3://bucket/key` or `https://host/a.jpg`. boto3 is imported only when an `s3://` URI
is met, so the producer's start-up never pays for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from jobs.errors import InputInvalid
from storage.base import ObjectNotFound, Storage
from storage.local import LocalStorage, read_file

if TYPE_CHECKING:
    from jobs.settings import Settings


def open_location(uri: str, settings: Settings) -> tuple[Storage, str]:
    """'./out', '/abs/dir', 'file:///abs/dir/', 's3://bucket/prefix/' -> (storage, key prefix).

    A local location is a `LocalStorage` rooted at the directory, with prefix ''. An S3
    location is an `S3Storage` for the whole bucket, with prefix 'prefix/' (or ''), so
    the keys it lists are the bucket's keys as a user sees them in any S3 tool.
    Write `storage.put(prefix + name, ...)`.
    """
    if uri.startswith("s3://"):
        from storage.s3 import S3Storage

        bucket, key = split_s3_uri(uri)
        prefix = key.strip("/")
        return S3Storage.from_settings(bucket, "", settings), f"{prefix}/" if prefix else ""
    if uri.startswith("file:"):
        return LocalStorage(file_uri_path(uri)), ""
    if "://" in uri:
        raise InputInvalid(
            f"unsupported location {uri!r}: use a folder, file:///dir/ or s3://bucket/prefix/"
        )
    return LocalStorage(Path(uri).expanduser()), ""


def read_uri(uri: str, settings: Settings) -> bytes:
    """Bytes of an input: file://, s3://bucket/key, https://.

    Refuses more than `settings.max_input_bytes` (`InputTooLarge`) before reading it all;
    a missing input is `InputInvalid("input not found: ...")`; a store or server that
    cannot be reached is `StorageUnavailable`.
    """
    try:
        return _read(uri, settings)
    except ObjectNotFound:
        # Without the query: a presigned https input carries its token there.
        raise ObjectNotFound(f"input not found: {uri.partition('?')[0]}") from None


def _read(uri: str, settings: Settings) -> bytes:
    limit = settings.max_input_bytes
    if uri.startswith("s3://"):
        from storage.s3 import S3Storage

        bucket, key = split_s3_uri(uri)
        return S3Storage.from_settings(bucket, "", settings).get(key, max_bytes=limit)
    if uri.startswith("file:"):
        path = file_uri_path(uri)
        try:
            return read_file(path, limit)
        except FileNotFoundError:
            raise ObjectNotFound(f"not found: {uri}") from None
        except PermissionError:
            raise InputInvalid(f"input {uri} is not readable by the worker") from None
    if uri.startswith("https://"):
        from storage.fetch import fetch_https

        return fetch_https(uri, settings)
    raise InputInvalid(f"unsupported input {uri!r}: use file://, s3:// or https://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/key' -> ('bucket', 'some/key'); the key may be ''."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise InputInvalid(f"{uri!r} names no bucket: write s3://bucket/key")
    return bucket, key


def file_uri_path(uri: str) -> Path:
    """'file:///abs/dir' -> Path('/abs/dir'); only local, absolute file URIs."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise InputInvalid(f"{uri!r} names host {parts.netloc!r}; file:// URIs must be local")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise InputInvalid(f"{uri!r} is not absolute: write file:///abs/path")
    if "\x00" in path:
        raise InputInvalid(f"{uri!r} holds a NUL character")
    return Path(path)
