"""The before/after contact sheet as one self-contained HTML page (no scripts)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from producer.results import ResultRow

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#f4f4f4;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
.summary span{margin-right:1em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.card{background:#fff;border-radius:6px;padding:8px;box-shadow:0 1px 2px #0002}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:6px}
figure{margin:0;text-align:center}
figure img{max-width:100%;max-height:160px}
figcaption{font-size:11px;color:#777}
.none{display:flex;align-items:center;justify-content:center;height:120px;background:#eee;
color:#999;font-size:12px}
.name{font-weight:600;word-break:break-all;margin-top:6px}
.state{font-size:12px;padding:1px 6px;border-radius:8px;background:#ddd}
.succeeded{background:#cfe8cf}.failed{background:#f3c9c9}.canceled{background:#e8e0c8}
.skipped{background:#e0e0e0}
.error{color:#a11;font-size:12px;margin-top:4px;word-break:break-word}
.note{color:#777;font-size:12px}
"""


@dataclass(frozen=True)
class Card:
    """One job on the sheet: its row, thumbnails and the links they open."""

    row: ResultRow
    before_thumb: str | None
    after_thumb: str | None
    before_link: str | None
    after_link: str | None


def _figure(thumb: str | None, link: str | None, caption: str, missing: str) -> str:
    if thumb is None:
        body = f'<div class="none">{escape(missing)}</div>'
    else:
        body = f'<img src="{escape(thumb)}" alt="{escape(caption)}" loading="lazy">'
    if link:
        body = f'<a href="{escape(link)}">{body}</a>'
    return f"<figure>{body}<figcaption>{escape(caption)}</figcaption></figure>"


def _after_placeholder(row: ResultRow) -> str:
    if row.state == "succeeded":
        return "no preview"
    if row.error_code:
        return row.error_code
    return row.state


def _card(card: Card) -> str:
    row = card.row
    error = ""
    if row.state in ("failed", "canceled", "skipped") and (row.error_code or row.error):
        error = (
            f'<div class="error"><b>{escape(row.error_code or "error")}</b>: '
            f"{escape(row.error or '')}</div>"
        )
    attempts = f" · {row.attempts} attempts" if row.attempts > 1 else ""
    return (
        f'<div class="card" id="job-{escape(row.job_id or row.source)}"><div class="pair">'
        + _figure(card.before_thumb, card.before_link, "before", "original not readable")
        + _figure(card.after_thumb, card.after_link, "after", _after_placeholder(row))
        + f'</div><div class="name">{escape(row.source)}</div>'
        f'<span class="state {escape(row.state)}">{escape(row.state)}</span>'
        f'<span class="note">{attempts}</span>{error}</div>'
    )


def render_sheet(
    batch: str,
    cards: Sequence[Card],
    *,
    manifest_link: str | None,
    links: str,
    expires_s: int,
) -> str:
    """The whole page: a summary line, then one card per job, failures first."""
    counts = Counter(card.row.state for card in cards)
    summary = "".join(
        f'<span class="state {escape(state)}">{escape(state)}: {n}</span> '
        for state, n in sorted(counts.items())
    )
    note = (
        f"Links are presigned URLs valid for {expires_s // 3600} h {expires_s % 3600 // 60} min "
        "from when this sheet was written."
        if links == "presigned"
        else "Links are relative: keep this page next to the outputs."
    )
    manifest = f' · <a href="{escape(manifest_link)}">manifest</a>' if manifest_link else ""
    ordered = sorted(cards, key=lambda c: (c.row.state == "succeeded", c.row.source))
    written = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(batch)}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>darkroom batch {escape(batch)}</h1>"
        f'<p class="summary">{len(cards)} jobs · {summary}{manifest}</p>'
        f'<p class="note">Written {escape(written)}. {escape(note)}</p>'
        f'<div class="grid">{"".join(_card(c) for c in ordered)}</div>'
        "</body></html>\n"
    )
