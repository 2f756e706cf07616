"""What every store of image bytes offers, and the rules its keys follow.

A key is a relative, '/'-separated path (`shoots/2024/a.webp`). The same key means the
same object on a local disk and in a bucket, so a key never holds '..', '.', empty
segments, backslashes or NUL, and never starts with '/'.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from jobs.errors import InputInvalid

MAX_KEY_LENGTH = 1024  # S3's limit, applied everywhere so keys move between stores


class ObjectNotFound(InputInvalid):
    """The key (or input URI) names nothing; a job reading it cannot succeed."""


@runtime_checkable
class Storage(Protocol):
    """A flat namespace of keys holding bytes: a local directory or an S3 prefix."""

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store `data` under `key`, replacing what was there; return the object's URI."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under `key`; `ObjectNotFound` (an `InputInvalid`) when missing."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""
        ...

    def url(self, key: str, expires_s: int | None = None) -> str:
        """A URL that reads the object: presigned GET (S3) or file:// URI (local)."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        ...

    def uri(self, key: str) -> str:
        """The object's stable URI (`file:///...` or `s3://bucket/key`), as put returns."""
        ...


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise `InputInvalid` saying why."""
    if not key:
        raise InputInvalid("storage key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InputInvalid(f"storage key is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    _check_chars(key)
    if key.startswith("/"):
        raise InputInvalid(f"storage key {key!r} must be relative, not start with '/'")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InputInvalid(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


def check_prefix(prefix: str) -> str:
    """Like `check_key`, but '' is allowed and the last segment may be partial or empty."""
    if not prefix:
        return prefix
    _check_chars(prefix)
    if prefix.startswith("/"):
        raise InputInvalid(f"storage prefix {prefix!r} must be relative, not start with '/'")
    if any(segment in (".", "..") for segment in prefix.split("/")):
        raise InputInvalid(f"storage prefix {prefix!r} has a '.' or '..' segment")
    return prefix


def _check_chars(key: str) -> None:
    # A backslash is a separator on Windows clients; NUL truncates paths in C libraries.
    if "\\" in key or "\x00" in key:
        raise InputInvalid(f"storage key {key!r} holds a backslash or NUL character")


def uri_for(storage: Storage, key: str) -> str:
    """The stable URI of `key` in `storage` (what a job's `input` or a manifest records)."""
    return storage.uri(key)
