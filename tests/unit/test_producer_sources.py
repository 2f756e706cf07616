"""Expanding SOURCE arguments in real temporary folders and manifests."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from jobs.errors import SchemaError
from producer.sources import destination_uri, expand_sources


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16)).save(buffer, "PNG")
    return buffer.getvalue()


TINY_PNG = _tiny_png()
IMAGE_NAMES = (".jpg", ".jpeg", ".png", ".webp")


def touch(root: Path, *names: str) -> None:
    """Image names get a real (tiny) image, since folders are judged by content."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = name.lower().endswith(IMAGE_NAMES)
        path.write_bytes(TINY_PNG if image else b"not an image; a folder scan skips it")


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    root = tmp_path / "shoot"
    touch(
        root,
        "day2/IMG_1.png",
        "day1/IMG_2.JPG",
        "day1/IMG_1.jpg",
        "cover.webp",
        "notes.txt",
        ".DS_Store",
        "day1/.hidden.jpg",
        ".cache/thumb.jpg",
        "raw/IMG_9.cr2",
    )
    return root


def test_directory_is_recursive_sorted_images_only(shoot: Path) -> None:
    items = expand_sources([str(shoot)])
    assert [i.name for i in items] == ["cover", "day1/IMG_1", "day1/IMG_2", "day2/IMG_1"]
    assert items[1].uri == (shoot / "day1/IMG_1.jpg").resolve().as_uri()
    assert items[1].source == os.path.join(str(shoot), "day1/IMG_1.jpg")


def test_relative_directory_gives_absolute_file_uris(
    shoot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(shoot.parent)
    items = expand_sources(["shoot"])
    assert items[1].source == "shoot/day1/IMG_1.jpg"
    assert items[1].uri.startswith("file:///") and items[1].uri.endswith("/shoot/day1/IMG_1.jpg")


def test_single_file_is_named_by_its_stem(shoot: Path) -> None:
    (item,) = expand_sources([str(shoot / "day1" / "IMG_1.jpg")])
    assert item.name == "IMG_1"


def test_glob_names_are_relative_to_the_fixed_part(
    shoot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(shoot.parent)
    items = expand_sources(["shoot/*/IMG_*"])
    assert [i.name for i in items] == ["day1/IMG_1", "day1/IMG_2", "day2/IMG_1"]


def test_glob_through_a_symlink_to_elsewhere(tmp_path: Path) -> None:
    touch(tmp_path, "elsewhere/x.jpg")
    (tmp_path / "shoot").mkdir()
    (tmp_path / "shoot" / "link.jpg").symlink_to(tmp_path / "elsewhere" / "x.jpg")
    (item,) = expand_sources([str(tmp_path / "shoot" / "*.jpg")])
    assert item.name == "link" and item.uri == (tmp_path / "elsewhere/x.jpg").as_uri()


def test_text_manifest_with_comments_paths_and_uris(shoot: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "list.txt"
    manifest.write_text(
        "# the keepers\n"
        "shoot/day1/IMG_1.jpg\n"
        "\n"
        f"{(shoot / 'cover.webp').as_uri()}\n"
        "s3://archive/scans/1950/a.tif\n"
        "https://example.com/photos/b.jpg\n"
    )
    items = expand_sources([str(manifest)])
    assert [i.uri for i in items] == [
        (shoot / "day1/IMG_1.jpg").as_uri(),
        (shoot / "cover.webp").as_uri(),
        "s3://archive/scans/1950/a.tif",
        "https://example.com/photos/b.jpg",
    ]
    assert [i.name for i in items] == ["IMG_1", "cover", "a", "b"]


def test_jsonl_manifest_accepts_input_uri_source_and_name(shoot: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.jsonl"
    rows = [
        {"input": "s3://b/x/1.jpg"},
        {"uri": "s3://b/x/2.jpg", "name": "second/two"},
        {"source": str(shoot / "cover.webp")},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = expand_sources([str(manifest)])
    assert [i.name for i in items] == ["1", "second/two", "cover"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"path": "a.jpg"}', "no input / uri / source"),
        ('["a.jpg"]', "expected an object"),
    ],
)
def test_bad_jsonl_line_is_named(tmp_path: Path, line: str, expected: str) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"input": "s3://b/ok.jpg"}\n' + line + "\n")
    with pytest.raises(SchemaError, match=rf"m\.jsonl:2: {expected}"):
        expand_sources([str(manifest)])


def test_missing_file_in_a_manifest_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("# one\ngone.jpg\n")
    with pytest.raises(SchemaError, match=r"m\.txt:2: gone\.jpg: no such file"):
        expand_sources([str(manifest)])


def test_same_names_are_disambiguated_deterministically(tmp_path: Path) -> None:
    touch(tmp_path, "a/x.jpg", "b/x.png", "c/x-2.jpg")
    args = [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.png"), str(tmp_path / "c")]
    first = [i.name for i in expand_sources(args)]
    assert first == ["x", "x-3", "x-2"]  # x-2 is a real file's name, so the copy gets x-3
    assert [i.name for i in expand_sources(args)] == first


def test_the_same_image_twice_is_one_item(shoot: Path) -> None:
    items = expand_sources([str(shoot), str(shoot / "cover.webp")])
    assert len(items) == 4


def test_missing_path_and_empty_results_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no such file or directory"):
        expand_sources([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="no images found"):
        expand_sources([str(tmp_path / "empty"), str(tmp_path / "*.jpg")])


def test_plain_http_is_refused() -> None:
    with pytest.raises(SchemaError, match="only https"):
        expand_sources(["http://example.com/a.jpg"])


def test_destinations_become_folder_uris(tmp_path: Path) -> None:
    assert destination_uri(str(tmp_path / "out")) == (tmp_path / "out").as_uri() + "/"
    assert destination_uri((tmp_path / "o").as_uri()) == (tmp_path / "o").as_uri() + "/"
    assert destination_uri("s3://bucket/prefix") == "s3://bucket/prefix/"
    with pytest.raises(SchemaError):
        destination_uri("ftp://host/dir")
