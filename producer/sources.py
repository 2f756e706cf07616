"""SOURCE arguments -> the images a batch edits.

A source is an image file, a folder (searched recursively for images, hidden files
skipped, sorted), a glob, an `s3://bucket/prefix`, an `https://` URL, or a manifest:
`.txt` (one path or URI per line, `#` comments) or `.jsonl` (objects with `input`,
`uri` or `source`, and optionally `name`). Each image keeps the `source` the user
would recognise and a `name`: its path under the folder given, without extension,
which becomes its output key (`shoot/day1/IMG_1.jpg` -> `day1/IMG_1`).

Folders and globs are judged by content, the way the decoder judges: every file's
first bytes are read, so `IMG_0004.MPO`, `IMG_0002.HEIC` or a file with no extension
are queued when they are images, and whatever is not an image is listed in
`Sources.skipped` with the reason ("text file", "PDF document"), never dropped silently.
A file named on its own, a manifest entry and an object in S3 are always queued: the
worker then says precisely what is wrong with it.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlparse

from jobs.errors import SchemaError
from storage.sniff import image_kind, sniff

if TYPE_CHECKING:
    from jobs.settings import Settings

IMAGE_EXTENSIONS = frozenset(  # for S3 listings, where reading every object would cost
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif"}
    | {".mpo", ".heic", ".heif", ".avif"}
)
HEAD_BYTES = 4096  # enough for Pillow's header reading or, failing that, the magic number
MANIFEST_EXTENSIONS = frozenset({".txt", ".jsonl"})
REMOTE_SCHEMES = ("s3://", "https://")
GLOB_CHARS = frozenset("*?[")
JSONL_KEYS = ("input", "uri", "source")


@dataclass(frozen=True)
class SourceItem:
    """One image to edit: its URI, how the user named it, and its output key."""

    uri: str
    source: str
    name: str


@dataclass(frozen=True)
class Skipped:
    """A file a folder or glob held that is not queued, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class Sources:
    """What the arguments name: the images to queue and the files passed over."""

    items: list[SourceItem]
    skipped: list[Skipped]


def expand_sources(args: Sequence[str], settings: Settings | None = None) -> list[SourceItem]:
    """Every image the arguments name, in order, with unique names; never empty.

    Raises:
        SchemaError: no images at all, a missing path, or a malformed manifest.
    """
    return scan_sources(args, settings).items


def scan_sources(args: Sequence[str], settings: Settings | None = None) -> Sources:
    """The images the arguments name (as `expand_sources`) and the files skipped, with why.

    Raises:
        SchemaError: no images at all (the message lists what was skipped), a missing
            path, or a malformed manifest.
    """
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    for arg in args:
        items += _expand(arg, settings, skipped)
    items = _unique(items)
    if not items:
        found = "no images found in " + ", ".join(args) if args else "no sources given"
        passed = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:5])
        raise SchemaError(found + (f" (skipped {len(skipped)}: {passed})" if skipped else ""))
    return Sources(items, skipped)


def _expand(arg: str, settings: Settings | None, skipped: list[Skipped]) -> list[SourceItem]:
    if arg.startswith("s3://"):
        return list(_s3(arg, settings))
    if arg.startswith("https://"):
        return [SourceItem(arg, arg, _stem(urlparse(arg).path) or "image")]
    if arg.startswith("http://"):
        raise SchemaError(f"{arg}: only https:// URLs are fetched")
    path = Path(unquote(urlparse(arg).path)) if arg.startswith("file://") else Path(arg)
    if path.is_dir():
        return list(_directory(path, arg, skipped))
    if path.is_file():
        if path.suffix.lower() in MANIFEST_EXTENSIONS:
            return list(_manifest(path))
        return [SourceItem(local_uri(path), arg, _stem(path.name))]
    if GLOB_CHARS & set(arg):
        return list(_glob(arg, skipped))
    raise SchemaError(f"{arg}: no such file or directory")


def local_uri(path: str | Path) -> str:
    """The absolute `file://` URI of a local path."""
    return Path(path).resolve().as_uri()


def _file_uri(absolute: str) -> str:
    """`Path.as_uri()` for a path already absolute, without pathlib's cost per file."""
    return "file://" + quote(absolute)


def destination_uri(out: str) -> str:
    """An output folder as a URI ending in '/': `file:///abs/dir/` or `s3://bucket/prefix/`."""
    if out.startswith("s3://"):
        if not urlparse(out).netloc:
            raise SchemaError(f"--out {out}: name a bucket, as in s3://bucket/prefix")
        return out.rstrip("/") + "/"
    if out.startswith("file://"):
        out = unquote(urlparse(out).path)
    elif "://" in out:
        raise SchemaError(f"--out {out}: give a folder or s3://bucket/prefix")
    return local_uri(out).rstrip("/") + "/"


def is_image(name: str) -> bool:
    """True for a name with an image extension (used for S3 listings only)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def not_an_image(path: str) -> str | None:
    """Why the file at `path` is not queued (what it is instead), or None for an image."""
    try:
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "empty file"
    if image_kind(head):  # the common case, 20x cheaper than Pillow's header reading
        return None
    found = sniff(head)
    return None if found.supported else found.kind


def _stem(name: str) -> str:
    """A file name without its extension."""
    return os.path.splitext(name.rstrip("/").rsplit("/", 1)[-1])[0]


def _key(relative: str) -> str:
    """A relative path as an output key: POSIX, no extension, nothing unsafe."""
    parts = [p for p in relative.replace("\\", "_").split("/") if p not in ("", ".", "..")]
    if not parts:
        return "image"
    parts[-1] = _stem(parts[-1]) or "image"
    return "/".join(parts)[:500]


def _directory(root: Path, arg: str, skipped: list[Skipped]) -> Iterator[SourceItem]:
    found: list[str] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_dir = Path(here).relative_to(root).as_posix()
        for name in files:
            if not name.startswith("."):
                found.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    base = str(root.resolve())  # once: resolving 20,000 files costs seconds
    for rel in sorted(found):
        why = not_an_image(f"{base}/{rel}")
        if why is not None:
            skipped.append(Skipped(os.path.join(arg, rel), why))
            continue
        yield SourceItem(_file_uri(f"{base}/{rel}"), os.path.join(arg, rel), _key(rel))


def _glob(pattern: str, skipped: list[Skipped]) -> Iterator[SourceItem]:
    base_parts: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if GLOB_CHARS & set(part):
            break
        base_parts.append(part)
    base = os.path.abspath(os.path.join(*base_parts)) if base_parts else os.getcwd()
    for match in sorted(glob.glob(pattern, recursive=True)):
        if not os.path.isfile(match):
            continue
        why = not_an_image(match)
        if why is not None:
            skipped.append(Skipped(match, why))
        else:
            # abspath, not resolve: a symlink may lead outside the folder the glob names
            rel = Path(os.path.relpath(os.path.abspath(match), base)).as_posix()
            yield SourceItem(local_uri(match), match, _key(rel))


def _manifest(path: Path) -> Iterator[SourceItem]:
    jsonl = path.suffix.lower() == ".jsonl"
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            entry, name = _jsonl_entry(text, where) if jsonl else (text, None)
            yield _manifest_item(entry, name, path.parent, where)


def _jsonl_entry(text: str, where: str) -> tuple[str, str | None]:
    try:
        row: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise SchemaError(f"{where}: expected an object with one of {', '.join(JSONL_KEYS)}")
    entry = next((row[k] for k in JSONL_KEYS if isinstance(row.get(k), str)), None)
    if entry is None:
        raise SchemaError(f"{where}: no {' / '.join(JSONL_KEYS)} string in {text[:80]}")
    name = row.get("name")
    if name is not None and not isinstance(name, str):
        raise SchemaError(f"{where}: 'name' must be a string")
    return entry, name


def _manifest_item(entry: str, name: str | None, base: Path, where: str) -> SourceItem:
    if entry.startswith(REMOTE_SCHEMES):
        uri = entry
        leaf = urlparse(entry).path
    else:
        local = Path(unquote(urlparse(entry).path)) if entry.startswith("file://") else Path(entry)
        local = local if local.is_absolute() else base / local
        if not local.is_file():
            raise SchemaError(f"{where}: {entry}: no such file")
        uri, leaf = local_uri(local), local.name
    return SourceItem(uri, entry, _key(name) if name else _key(_stem(leaf)))


def _s3(arg: str, settings: Settings | None) -> Iterator[SourceItem]:
    """One object, or every image under a prefix taken as a folder."""
    if settings is None:
        raise SchemaError(f"{arg}: listing S3 needs settings (endpoint, credentials)")
    from storage import open_location
    from storage.location import split_s3_uri

    bucket, key = split_s3_uri(arg)
    storage, _ = open_location(f"s3://{bucket}/", settings)
    if is_image(key) and storage.exists(key):
        yield SourceItem(storage.uri(key), arg, _stem(key))
        return
    folder = key.strip("/") + "/" if key.strip("/") else ""
    for found in storage.list(folder):
        leaf = PurePosixPath(found).name
        if found.endswith("/") or leaf.startswith(".") or not is_image(found):
            continue
        uri = storage.uri(found)
        yield SourceItem(uri, uri, _key(found[len(folder) :]))


def _unique(items: list[SourceItem]) -> list[SourceItem]:
    """Drop repeats of a URI; give later items whose name is taken `name-2`, `name-3`..."""
    seen_uris: set[str] = set()
    kept = []
    for item in items:
        if item.uri not in seen_uris:
            seen_uris.add(item.uri)
            kept.append(item)
    taken = {item.name for item in kept}
    used: set[str] = set()
    out = []
    for item in kept:
        name = item.name
        if name in used:
            n = 2
            while f"{item.name}-{n}" in taken or f"{item.name}-{n}" in used:
                n += 1
            name = f"{item.name}-{n}"
        used.add(name)
        out.append(replace(item, name=name) if name != item.name else item)
    return out
