"""Files a folder scan passed over: told at submit, kept beside the outputs, in the manifest.

`<out>/<batch>.skipped.jsonl` holds one `{"source", "reason"}` object per file, written
at submit; the batch's manifest lists them again (state `skipped`), so a batch that
reports "100 % finished" also says what it never took.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from producer.sources import Skipped

if TYPE_CHECKING:
    from jobs.settings import Settings

SHOWN = 10  # skipped files named on the terminal; the rest are counted


def skipped_key(prefix: str, batch: str) -> str:
    """The storage key of a batch's skipped list under an output prefix."""
    return (
        f"{prefix.rstrip('/')}/{batch}.skipped.jsonl"
        if prefix.strip("/")
        else (f"{batch}.skipped.jsonl")
    )


def write_skipped(settings: Settings, out: str, batch: str, skipped: Sequence[Skipped]) -> str:
    """Write the list next to the batch's outputs; returns its URI."""
    from storage import open_location

    storage, prefix = open_location(out, settings)
    body = "".join(
        json.dumps({"source": s.source, "reason": s.reason}, sort_keys=True) + "\n" for s in skipped
    )
    return storage.put(skipped_key(prefix, batch), body.encode(), "application/x-ndjson")


def read_skipped(settings: Settings, out: str, batch: str) -> list[Skipped]:
    """The batch's skipped list, or [] when nothing was skipped (or it is unreadable)."""
    from storage import open_location

    storage, prefix = open_location(out, settings)
    key = skipped_key(prefix, batch)
    try:
        if not storage.exists(key):
            return []
        lines = storage.get(key).decode("utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return []
    return [Skipped(str(r.get("source", "")), str(r.get("reason", ""))) for r in rows]


def describe_skipped(skipped: Sequence[Skipped]) -> str:
    """Terminal lines: how many files were skipped, why, and the first few by name."""
    reasons = Counter(s.reason for s in skipped)
    summary = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    lines = [f"skipped {len(skipped)} files that are not images ({summary}):"]
    lines += [f"  {s.source}: {s.reason}" for s in skipped[:SHOWN]]
    if len(skipped) > SHOWN:
        lines.append(f"  ... and {len(skipped) - SHOWN} more (see <batch>.skipped.jsonl)")
    return "\n".join(lines)
