"""Batch naming, job ids, progress and the report pieces that need no server."""

from __future__ import annotations

from html.parser import HTMLParser
from io import BytesIO

from PIL import Image

from jobs.schema import Lane, OutputSpec
from producer.batch import BatchProgress, derive_batch_name, job_id_for
from producer.contact_sheet import Card, render_sheet
from producer.recipes import recipe_from_ops
from producer.report import manifest_jsonl, thumbnail
from producer.results import ResultRow
from producer.sources import SourceItem

RECIPE = recipe_from_ops(["denoise:strength=8", "resize:max_side=2048"]).recipe
OTHER = recipe_from_ops(["denoise:strength=9", "resize:max_side=2048"]).recipe
SPEC = OutputSpec(format="webp", quality=90, uri="file:///out/")
ITEM = SourceItem("file:///shoot/a.jpg", "shoot/a.jpg", "a")


def test_batch_name_is_stable_and_changes_with_what_was_asked() -> None:
    name = derive_batch_name(["/shoot"], RECIPE, Lane.FINAL, "file:///out/", SPEC)
    assert name == derive_batch_name(["/shoot"], RECIPE, Lane.FINAL, "file:///out/", SPEC)
    assert name.startswith("shoot-")
    variants = {
        derive_batch_name(["/shoot"], OTHER, Lane.FINAL, "file:///out/", SPEC),
        derive_batch_name(["/shoot"], RECIPE, Lane.PREVIEW, "file:///out/", SPEC),
        derive_batch_name(["/shoot"], RECIPE, Lane.FINAL, "file:///elsewhere/", SPEC),
        derive_batch_name(["/other"], RECIPE, Lane.FINAL, "file:///out/", SPEC),
        derive_batch_name(
            ["/shoot"], RECIPE, Lane.FINAL, "file:///out/", SPEC.model_copy(update={"quality": 70})
        ),
    }
    assert name not in variants and len(variants) == 5


def test_recipe_name_wins_over_source_in_the_batch_name() -> None:
    named = recipe_from_ops(["auto_levels"], name="Studio Retouch").recipe
    assert derive_batch_name(["/shoot"], named, Lane.FINAL, "x", SPEC).startswith("studio-retouch-")


def test_job_ids_are_deterministic_and_valid() -> None:
    job_id = job_id_for("b", ITEM, RECIPE.digest(), Lane.FINAL, SPEC)
    assert job_id == job_id_for("b", ITEM, RECIPE.digest(), Lane.FINAL, SPEC)
    assert len(job_id) == 32 and job_id.isalnum()
    assert job_id != job_id_for("b", ITEM, OTHER.digest(), Lane.FINAL, SPEC)
    assert job_id != job_id_for("c", ITEM, RECIPE.digest(), Lane.FINAL, SPEC)
    assert job_id != job_id_for("b", ITEM, RECIPE.digest(), Lane.PREVIEW, SPEC)


def test_progress_from_counters() -> None:
    progress = BatchProgress.from_counts(
        {"total": 4, "succeeded": 2, "failed": 1, "queued": 1, "canceled": 0}
    )
    assert (progress.finished, progress.done, progress.percent) == (3, False, 75.0)
    done = BatchProgress.from_counts({"total": 2, "succeeded": 2})
    assert done.done and done.all_succeeded
    assert not BatchProgress.from_counts({"total": 2, "succeeded": 1, "failed": 1}).all_succeeded


def test_thumbnail_is_small_upright_jpeg() -> None:
    buffer = BytesIO()
    Image.new("RGBA", (1200, 600), (200, 10, 10, 128)).save(buffer, "PNG")
    with Image.open(BytesIO(thumbnail(buffer.getvalue(), side=100))) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (100, 50)


def test_manifest_has_one_json_row_per_job() -> None:
    rows = [
        ResultRow("a.jpg", "j1", "succeeded", output="file:///o/a.webp", attempts=1),
        ResultRow("b.jpg", "j2", "failed", error_code="input_invalid", error="not an image"),
    ]
    lines = manifest_jsonl(rows).decode().splitlines()
    assert len(lines) == 2
    assert '"error_code": "input_invalid"' in lines[1] and '"job_id": "j2"' in lines[1]


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_sheet_escapes_names_and_shows_failures_first() -> None:
    ok = ResultRow("<b>ok</b>.jpg", "j1", "succeeded", output="file:///o/ok.webp")
    bad = ResultRow("z.jpg", "j2", "failed", error_code="input_invalid", error="not <an> image")
    cards = [Card(ok, "t/1.jpg", "t/2.jpg", "ok.jpg", "ok.webp"), Card(bad, None, None, None, None)]
    html = render_sheet(
        "b1", cards, manifest_link="b1.manifest.jsonl", links="relative", expires_s=3600
    )
    parser = _Collect()
    parser.feed(html)
    text = "".join(parser.text)
    assert "<b>ok</b>" not in html and "&lt;b&gt;ok&lt;/b&gt;.jpg" in html
    assert "not <an> image" in text
    assert text.index("z.jpg") < text.index("<b>ok</b>.jpg")
    assert parser.tags.count("img") == 2
