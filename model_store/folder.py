"""Reading a model folder as bytes: its files with sha256, its parameter count, its class.

No torch and no diffusers here: a diffusers folder is `model_index.json` plus component
subfolders, and a `.safetensors` file starts with a JSON header listing every tensor's
dtype and shape, which is all the size estimate needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

from model_store.errors import SourceError
from model_store.manifest import FileEntry

CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Weights whose header we cannot read are assumed 16-bit, the usual for large models.
ASSUMED_BYTES_PER_PARAM = 2
_MAX_HEADER = 100 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(src: Path) -> list[Path]:
    """Every file under `src`, sorted; hidden files and folders (.git, .cache) are skipped."""
    found = [
        p
        for p in src.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
    ]
    return sorted(found)


def scan(src: Path) -> list[FileEntry]:
    """One entry, with sha256 and size, per file of the model folder `src`.

    Raises:
        SourceError: `src` is not a folder, or holds no files.
    """
    if not src.is_dir():
        raise SourceError(f"{src} is not a folder")
    paths = model_files(src)
    if not paths:
        raise SourceError(f"{src} holds no files to publish")
    return [
        FileEntry(path=p.relative_to(src).as_posix(), sha256=sha256_file(p), size=p.stat().st_size)
        for p in paths
    ]


def safetensors_params(path: Path) -> int:
    """Number of parameters in a .safetensors file, read from its header alone.

    Raises:
        SourceError: the file is too short or its header is corrupt.
    """
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise SourceError(f"{path} is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER:
            raise SourceError(f"{path} has an implausible safetensors header ({length} bytes)")
        try:
            header: dict[str, Any] = json.loads(fh.read(length))
        except ValueError:
            raise SourceError(f"{path} has a corrupt safetensors header") from None
    return sum(
        math.prod(info.get("shape", []))
        for key, info in header.items()
        if key != "__metadata__" and isinstance(info, dict)
    )


def parameter_count(src: Path, entries: list[FileEntry]) -> int:
    """Parameters of every weight file: exact for safetensors, estimated for the rest."""
    total = 0
    for entry in entries:
        if entry.path.endswith(".safetensors"):
            total += safetensors_params(src / entry.path)
        elif entry.path.endswith(WEIGHT_SUFFIXES):
            total += entry.size // ASSUMED_BYTES_PER_PARAM
    return total


def pipeline_class_of(src: Path) -> str | None:
    """The `_class_name` diffusers records in model_index.json (or a component's config).

    Raises:
        SourceError: model_index.json (or a config) is not a JSON object.
    """
    for name in ("model_index.json", "config.json"):
        path = src / name
        if path.is_file():
            try:
                value = json.loads(path.read_text()).get("_class_name")
            except (ValueError, AttributeError):
                raise SourceError(f"{path} is not a JSON object") from None
            if isinstance(value, str):
                return value
    return None


def license_of(src: Path) -> str | None:
    """The `license:` of a hub model card's front matter, if the folder has one."""
    card = src / "README.md"
    if not card.is_file():
        return None
    lines = card.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("\"'")
    return None
