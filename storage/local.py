"""Objects as files under one directory: the embedded default store.

Writes go to a temporary file in the target's own directory and are renamed into
place with `os.replace`, so a reader sees the old file or the whole new one, never a
half-written one, and a redelivered job simply overwrites its output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jobs.errors import InputInvalid, InputTooLarge, StorageUnavailable
from storage.base import ObjectNotFound, check_key, check_prefix

TEMP_PREFIX = ".tmp-"  # in-flight writes; never listed


class LocalStorage:
    """A directory holding one file per key; `content_type` is not recorded."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path.as_uri()

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        path = self._path(key)
        try:
            return read_file(path, max_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(f"not found: {path.as_uri()}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        # Walk only the deepest directory the prefix names; the rest is a string match.
        start = self.root / prefix.rpartition("/")[0]
        keys = [key for key in _walk(start, self.root) if key.startswith(prefix)]
        yield from sorted(keys)

    def url(self, key: str, expires_s: int | None = None) -> str:
        return self._path(key).as_uri()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # A symlink inside the root must not lead a key outside it.
        if not path.resolve().is_relative_to(self.root):
            raise InputInvalid(f"storage key {key!r} leads outside {self.root}")
        return path


def read_file(path: Path, max_bytes: int | None = None) -> bytes:
    """A file's bytes, refusing more than `max_bytes` without reading them all."""
    if path.is_dir():
        raise InputInvalid(f"{path} is a directory, not a file")
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise InputTooLarge(
                f"{path} is {describe_size(size)}; the limit is {describe_size(max_bytes)}"
            )
        # Read one byte past the cap: the file may have grown since fstat.
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise InputTooLarge(f"{path} is over the {describe_size(max_bytes)} limit")
    return data


def describe_size(size: int) -> str:
    """`52428800` -> `'50.0 MiB'`: sizes as a person reads them in an error message."""
    if size < 1024:
        return f"{size} bytes"
    if size < 2**20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 2**20:.1f} MiB"


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes 0600; outputs are meant to be read
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _walk(start: Path, root: Path) -> Iterator[str]:
    for directory, _dirs, files in os.walk(start):
        base = Path(directory).relative_to(root)
        for name in files:
            if not name.startswith(TEMP_PREFIX):
                yield (base / name).as_posix()
