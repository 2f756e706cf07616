"""Where each thing lives inside a store, as backend keys.

<name>/<version>/files/<path>     the model folder, file by file
<name>/<version>/publishing.json  present only while a publish uploads
<name>/<version>/manifest.json    written last: a version exists once it is there
<name>/aliases.json               alias -> history of versions (see aliases.py)
"""

MANIFEST = "manifest.json"
PUBLISHING = "publishing.json"
FILES = "files"


def manifest_key(name: str, version: str) -> str:
    return f"{name}/{version}/{MANIFEST}"


def file_key(name: str, version: str, path: str) -> str:
    return f"{name}/{version}/{FILES}/{path}"


def publishing_key(name: str, version: str) -> str:
    return f"{name}/{version}/{PUBLISHING}"


def aliases_key(name: str) -> str:
    return f"{name}/aliases.json"


def version_of(key: str) -> tuple[str, str] | None:
    """(name, version) a key belongs to, or None for a model-level key."""
    parts = key.split("/")
    return (parts[0], parts[1]) if len(parts) >= 3 else None


def manifest_owner(key: str) -> tuple[str, str] | None:
    """(name, version) if `key` is a version's manifest, else None."""
    parts = key.split("/")
    return (parts[0], parts[1]) if len(parts) == 3 and parts[2] == MANIFEST else None
