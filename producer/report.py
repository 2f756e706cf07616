"""A batch's results manifest (JSONL) and its before/after contact sheet (HTML).

Both are written next to the outputs: `<out>/<batch>.manifest.jsonl`,
`<out>/<batch>.contact.html`, with thumbnails in `<out>/<batch>.thumbs/`. In a local
folder the sheet links with relative paths, so the folder can be moved or zipped
whole. In S3 every link is a presigned URL (valid `settings.presign_expires_s`),
because relative links from a presigned page would arrive unsigned and be refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from PIL import Image, ImageOps

from producer.contact_sheet import Card, render_sheet
from producer.results import ResultRow
from producer.sources import destination_uri

if TYPE_CHECKING:
    from jobs.settings import Settings

THUMB_SIDE = 320
THUMB_WORKERS = 4  # decoding releases the GIL; more threads than this only thrash 2 cores


@dataclass(frozen=True)
class ReportPaths:
    """Where the reports went, and how the contact sheet links its images."""

    manifest: str
    contact_sheet: str
    thumbnails: int
    links: str  # "relative" or "presigned"
    open_url: str  # what to open in a browser: the file, or a presigned URL of the sheet

    def describe(self) -> str:
        """Two or three lines for the terminal."""
        lines = [f"manifest: {self.manifest}", f"contact sheet: {self.contact_sheet}"]
        if self.open_url != self.contact_sheet:
            lines.append(f"  open it (presigned, expires): {self.open_url}")
        return "\n".join(lines)


def manifest_jsonl(rows: Sequence[ResultRow]) -> bytes:
    """One JSON object per job: source, job_id, state, output, error, attempts, timings."""
    return "".join(json.dumps(row.to_dict(), sort_keys=True) + "\n" for row in rows).encode()


def thumbnail(data: bytes, side: int = THUMB_SIDE) -> bytes:
    """A JPEG no larger than `side` on its longest edge, upright, alpha on white, shown
    the way the outputs are: its ICC profile applied (sRGB), 16-bit samples reduced to
    8 bits by their top bits (not clipped, which turned 16-bit greys white)."""
    from storage.decode import to_srgb, working_mode

    with Image.open(BytesIO(data)) as image:
        image.draft("RGB", (side * 2, side * 2))  # JPEG decodes at a fraction of full size
        icc = image.info.get("icc_profile")
        upright = ImageOps.exif_transpose(image)
        upright.thumbnail((side, side))
    if icc and upright.mode in ("RGB", "RGBA", "CMYK"):
        upright = to_srgb(upright, icc)
    rgba = working_mode(upright).convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    buffer = BytesIO()
    flat.save(buffer, "JPEG", quality=82)
    return buffer.getvalue()


SKIPPED = "skipped"  # a file the folder scan did not queue: not an image


def skipped_row(source: str, reason: str) -> ResultRow:
    """A manifest row for a file that was never queued, saying why."""
    return ResultRow(source=source, job_id="", state=SKIPPED, error_code=SKIPPED, error=reason)


class _Sheet:
    """Builds the cards of one batch: thumbnails written, links resolved."""

    def __init__(self, settings: Settings, out: str, batch: str) -> None:
        from storage import open_location

        self.settings = settings
        self.out = destination_uri(out)
        self.batch = batch
        self.storage, self.prefix = open_location(self.out, settings)
        self.remote = self.out.startswith("s3://")

    def key(self, name: str) -> str:
        return f"{self.prefix.rstrip('/')}/{name}" if self.prefix.strip("/") else name

    def card(self, row: ResultRow) -> Card:
        if row.state == SKIPPED:
            return Card(row, None, None, None, None)
        before = self._thumb(row.input, f"{row.job_id}.before.jpg", reuse=True)
        after = None
        if row.state == "succeeded" and row.output:
            after = self._thumb(row.output, f"{row.job_id}.after.jpg", reuse=False)
        return Card(
            row=row,
            before_thumb=before,
            after_thumb=after,
            before_link=self.link(row.input),
            after_link=self.link(row.output) if row.state == "succeeded" else None,
        )

    def _thumb(self, uri: str | None, name: str, *, reuse: bool) -> str | None:
        """Link to the thumbnail of `uri`, made if needed; None when it cannot be read."""
        if not uri:
            return None
        from storage import read_uri

        key = self.key(f"{self.batch}.thumbs/{name}")
        try:
            if not (reuse and self.storage.exists(key)):
                self.storage.put(key, thumbnail(read_uri(uri, self.settings)), "image/jpeg")
        except Exception:  # an unreadable image gets a placeholder, not a failed report
            return None
        return self._own_link(f"{self.batch}.thumbs/{name}")

    def _own_link(self, name: str) -> str:
        if self.remote:
            return self.storage.url(self.key(name), expires_s=self.settings.presign_expires_s)
        return name

    def link(self, uri: str | None) -> str | None:
        """How the sheet refers to an image: relative, presigned, or the URL itself."""
        if not uri:
            return None
        if uri.startswith(self.out):
            return self._own_link(uri[len(self.out) :])
        if uri.startswith("file://") and not self.remote:
            local_dir = unquote(urlparse(self.out).path)
            return os.path.relpath(unquote(urlparse(uri).path), local_dir)
        if uri.startswith("s3://"):
            return _presigned(uri, self.settings)
        return uri


def _presigned(uri: str, settings: Settings) -> str:
    from storage import open_location
    from storage.location import split_s3_uri

    bucket, key = split_s3_uri(uri)
    location, _ = open_location(f"s3://{bucket}/", settings)
    return location.url(key, expires_s=settings.presign_expires_s)


def write_reports(
    settings: Settings,
    rows: Sequence[ResultRow],
    *,
    out: str,
    batch: str,
    on_card: Callable[[], object] | None = None,
) -> ReportPaths:
    """Write the manifest and the contact sheet of `batch` into `out`; return their URIs."""
    from producer.skipped import read_skipped
    from storage.formats import apply_limits

    apply_limits(settings)  # thumbnails open images under the configured pixel limit
    sheet = _Sheet(settings, out, batch)
    rows = [*rows, *(skipped_row(s.source, s.reason) for s in read_skipped(settings, out, batch))]
    manifest = sheet.storage.put(
        sheet.key(f"{batch}.manifest.jsonl"), manifest_jsonl(rows), "application/x-ndjson"
    )

    def one(row: ResultRow) -> Card:
        card = sheet.card(row)
        if on_card is not None:
            on_card()
        return card

    with ThreadPoolExecutor(THUMB_WORKERS) as pool:
        cards = list(pool.map(one, rows))
    links = "presigned" if sheet.remote else "relative"
    html = render_sheet(
        batch,
        cards,
        manifest_link=sheet.link(manifest),
        links=links,
        expires_s=settings.presign_expires_s,
    )
    contact = sheet.storage.put(
        sheet.key(f"{batch}.contact.html"), html.encode(), "text/html; charset=utf-8"
    )
    thumbs = sum((c.before_thumb is not None) + (c.after_thumb is not None) for c in cards)
    sheet_key = sheet.key(f"{batch}.contact.html")
    open_url = sheet.storage.url(sheet_key, expires_s=settings.presign_expires_s)
    return ReportPaths(manifest, contact, thumbs, links, open_url if sheet.remote else contact)
