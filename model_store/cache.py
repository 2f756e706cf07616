"""Each worker's pull-through cache of models, on local disk.

Layout under the cache root:

    <name>/<version>/...          complete, verified copies (with a hidden marker)
    .locks/<name>@<version>.lock  flock'd: exclusive to write or evict, shared to read
    .tmp/<name>@<version>.<id>/   downloads in progress
    .trash/                       copies being deleted

A copy is downloaded into `.tmp`, every file's sha256 and size checked, a marker
written, then the folder is renamed into place: a reader sees a complete copy or
none. The marker records each file's size, mtime and inode when it was verified, so
a later pull re-checks a copy with a `stat` per file instead of re-hashing it; any
write to a cached file changes its mtime and the copy is discarded and pulled again.
The marker's own mtime is the copy's last use, which LRU eviction goes by.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import ModelUnavailable
from model_store.folder import sha256_file
from model_store.manifest import FileEntry, Manifest

MARKER = ".darkroom-model.json"
Fetch = Callable[[FileEntry, Path], None]


@dataclass(frozen=True)
class LocalModel:
    """A verified, complete local copy of one model version."""

    path: Path
    manifest: Manifest
    copied_bytes: int = 0
    """Bytes this pull downloaded: 0 when the cached copy was used as it was."""
    lock_file: Path | None = None

    @contextmanager
    def in_use(self, timeout_s: float = 60.0) -> Iterator[LocalModel]:
        """Pin the copy while its files are read: eviction and repair wait for it.

        Raises:
            ModelUnavailable: another process held the copy's lock to replace it for
                `timeout_s` seconds.
        """
        if self.lock_file is None:
            yield self
            return
        with flocked(self.lock_file, shared=True, timeout_s=timeout_s) as got:
            if not got:
                raise ModelUnavailable(f"{self.manifest.ref} is being replaced in the cache")
            yield self


@dataclass(frozen=True)
class CacheEntry:
    name: str
    version: str
    path: Path
    size: int
    last_used: float

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@contextmanager
def flocked(path: Path, *, shared: bool, timeout_s: float | None) -> Iterator[bool]:
    """Hold an flock on `path` (True), or give up after `timeout_s` (False; None: try once).

    flock, unlike an O_EXCL marker, dies with its process: a crashed pull never
    leaves the model locked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + (timeout_s or 0.0)
    try:
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
        yield True
    finally:
        os.close(fd)


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class ModelCache:
    """Complete, verified model copies on this machine, bounded by `max_bytes`."""

    def __init__(self, root: Path, max_bytes: int, lock_timeout_s: float = 3600.0) -> None:
        self.root = root.expanduser().resolve()
        self.max_bytes = max_bytes
        self.lock_timeout_s = lock_timeout_s

    def path_of(self, name: str, version: str) -> Path:
        return self.root / name / version

    def lock_file(self, name: str, version: str) -> Path:
        return self.root / ".locks" / f"{name}@{version}.lock"

    @contextmanager
    def locked(self, manifest: Manifest, *, shared: bool) -> Iterator[None]:
        """Hold the model's lock, waiting up to `lock_timeout_s` for another puller.

        Raises:
            ModelUnavailable: another process held the lock for `lock_timeout_s`.
        """
        lock = self.lock_file(manifest.name, manifest.version)
        with flocked(lock, shared=shared, timeout_s=self.lock_timeout_s) as got:
            if not got:
                raise ModelUnavailable(
                    f"gave up after {self.lock_timeout_s:.0f} s waiting for another process "
                    f"to finish pulling {manifest.ref} into {self.root} (lock {lock})"
                )
            yield

    def local(self, manifest: Manifest, copied_bytes: int = 0) -> LocalModel:
        path = self.path_of(manifest.name, manifest.version)
        return LocalModel(
            path, manifest, copied_bytes, self.lock_file(manifest.name, manifest.version)
        )

    # -- checking --------------------------------------------------------------------

    def is_intact(self, manifest: Manifest) -> bool:
        """The cheap check: marker matches the manifest, every file's stat is unchanged."""
        path = self.path_of(manifest.name, manifest.version)
        try:
            marker = json.loads((path / MARKER).read_text())
            stamps = marker["files"]
            if marker["digest"] != manifest.digest():
                return False
            return all(_stamp(path / e.path) == stamps.get(e.path) for e in manifest.files)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def touch(self, manifest: Manifest) -> None:
        os.utime(self.path_of(manifest.name, manifest.version) / MARKER)

    def damaged_files(self, manifest: Manifest) -> list[str]:
        """The full check: every cached file re-hashed against the manifest."""
        path = self.path_of(manifest.name, manifest.version)
        problems = []
        for entry in manifest.files:
            file = path / entry.path
            if not file.is_file():
                problems.append(f"cache {path}: {entry.path} is missing")
            elif file.stat().st_size != entry.size or sha256_file(file) != entry.sha256:
                problems.append(f"cache {path}: {entry.path} does not match its sha256")
        return problems

    # -- filling ---------------------------------------------------------------------

    def install(self, manifest: Manifest, fetch: Fetch, where: str) -> int:
        """Download, verify and atomically place a copy; the caller holds the exclusive lock.

        Returns the bytes downloaded. A file that does not match the manifest raises
        ModelUnavailable naming it: the copy in `where` (the store) is damaged.
        """
        temp = self.root / ".tmp" / f"{manifest.name}@{manifest.version}.{uuid.uuid4().hex}"
        try:
            stamps = {
                e.path: self._fetch_checked(manifest, e, temp, fetch, where) for e in manifest.files
            }
            marker = {
                "ref": manifest.ref,
                "digest": manifest.digest(),
                "size": manifest.total_bytes,
                "files": stamps,
            }
            (temp / MARKER).write_text(json.dumps(marker))
            dest = self.path_of(manifest.name, manifest.version)
            if dest.exists():
                self._discard(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(temp, dest)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        return manifest.total_bytes

    def _fetch_checked(
        self, manifest: Manifest, entry: FileEntry, temp: Path, fetch: Fetch, where: str
    ) -> list[int]:
        target = temp / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        fetch(entry, target)
        size = target.stat().st_size
        digest = sha256_file(target)
        if size != entry.size or digest != entry.sha256:
            raise ModelUnavailable(
                f"model {manifest.ref}: file {entry.path} in the store {where} is damaged "
                f"(sha256 {digest[:12]}..., {size} bytes; the manifest says "
                f"{entry.sha256[:12]}..., {entry.size} bytes); restore the file or publish "
                f"a new version, and run `darkroom models verify {manifest.ref}`"
            )
        return _stamp(target)

    def _discard(self, path: Path) -> None:
        # Rename first: no reader can ever see a half-deleted copy.
        trash = self.root / ".trash" / uuid.uuid4().hex
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- bounding --------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Every complete copy, least recently used first."""
        found = []
        for marker in self.root.glob(f"*/*/{MARKER}"):
            path = marker.parent
            if path.parent.name.startswith("."):
                continue
            try:
                size = int(json.loads(marker.read_text())["size"])
                used = marker.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.append(CacheEntry(path.parent.name, path.name, path, size, used))
        return sorted(found, key=lambda e: e.last_used)

    def evict(self, keep: frozenset[str] = frozenset()) -> list[CacheEntry]:
        """Evict least recently used copies until the cache fits `max_bytes`.

        Never evicts a ref in `keep`, nor a copy another process holds locked (being
        pulled, or pinned with `LocalModel.in_use`).
        """
        entries = self.entries()
        total = sum(e.size for e in entries)
        evicted = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.ref in keep:
                continue
            with flocked(
                self.lock_file(entry.name, entry.version), shared=False, timeout_s=None
            ) as got:
                if got and entry.path.exists():
                    self._discard(entry.path)
                    total -= entry.size
                    evicted.append(entry)
        return evicted

    def clean_temp(self) -> int:
        """Remove downloads abandoned by crashed pulls and leftover trash; returns how many."""
        removed = 0
        for temp in sorted((self.root / ".tmp").glob("*@*.*")):
            name, _, rest = temp.name.partition("@")
            version = rest.rsplit(".", 1)[0]
            with flocked(self.lock_file(name, version), shared=False, timeout_s=None) as got:
                if got:
                    shutil.rmtree(temp, ignore_errors=True)
                    removed += 1
        for trash in (self.root / ".trash").glob("*"):
            shutil.rmtree(trash, ignore_errors=True)
            removed += 1
        return removed
