"""Store garbage: files no manifest references.

A publish uploads files before its manifest, announcing itself with a
`publishing.json` that holds its start time. A version folder with no manifest is a
publish in progress while that marker is younger than the grace period, and garbage
after it (or when there is no marker at all). Beside a published version, any file
its manifest does not list is garbage.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from model_store.backends import Backend
from model_store.layout import file_key, manifest_key, publishing_key, version_of
from model_store.manifest import Manifest


@dataclass
class GcReport:
    """What one gc did."""

    evicted: list[str] = field(default_factory=list)
    """Refs evicted from this machine's cache (least recently used first)."""
    freed_bytes: int = 0
    temp_removed: int = 0
    """Abandoned downloads and trash removed from the cache."""
    store_removed: list[str] = field(default_factory=list)
    """Store keys deleted: unreferenced files of dead publishes or stray files."""
    cache_bytes: int = 0
    """Size of the cache after gc."""


def _publish_started(backend: Backend, name: str, version: str) -> float | None:
    raw = backend.read(publishing_key(name, version))
    try:
        return float(json.loads(raw)["started_at"]) if raw else None
    except (ValueError, KeyError, TypeError):
        return None


def _garbage_of(
    backend: Backend, name: str, version: str, keys: list[str], grace_s: float
) -> list[str]:
    raw = backend.read(manifest_key(name, version))
    if raw is None:
        started = _publish_started(backend, name, version)
        in_progress = started is not None and time.time() - started < grace_s
        return [] if in_progress else keys
    manifest = Manifest.from_json(raw, manifest_key(name, version))
    wanted = {file_key(name, version, e.path) for e in manifest.files}
    wanted.add(manifest_key(name, version))
    # A publishing marker beside a manifest is left from a publish that died at the very end.
    return [k for k in keys if k not in wanted]


def collect_store(backend: Backend, grace_s: float) -> list[str]:
    """Delete unreferenced store files; returns their keys."""
    by_version: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in backend.walk():
        owner = version_of(key)
        if owner is not None:
            by_version[owner].append(key)
    removed = []
    for (name, version), keys in sorted(by_version.items()):
        for key in _garbage_of(backend, name, version, keys, grace_s):
            backend.delete(key)
            removed.append(key)
    return removed
