"""LocalStorage, key rules, locations and reading file:// inputs."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from jobs.errors import InputInvalid, InputTooLarge, StorageUnavailable
from jobs.settings import Settings
from storage import LocalStorage, ObjectNotFound, Storage, open_location, read_uri, uri_for
from storage.base import check_key


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "out")


def test_round_trip_returns_a_file_uri_that_points_at_the_bytes(store: LocalStorage) -> None:
    uri = store.put("shoot/a.webp", b"pixels", "image/webp")

    assert uri == (store.root / "shoot" / "a.webp").as_uri()
    assert Path(uri.removeprefix("file://")).read_bytes() == b"pixels"
    assert store.get("shoot/a.webp") == b"pixels"
    assert store.exists("shoot/a.webp")
    assert uri_for(store, "shoot/a.webp") == uri
    assert store.url("shoot/a.webp") == uri
    assert isinstance(store, Storage)


def test_put_overwrites_so_a_redelivered_job_does_not_duplicate(store: LocalStorage) -> None:
    store.put("a.png", b"first", "image/png")
    store.put("a.png", b"second", "image/png")

    assert store.get("a.png") == b"second"
    assert list(store.list()) == ["a.png"]


def test_missing_key_is_object_not_found_an_input_invalid(store: LocalStorage) -> None:
    with pytest.raises(ObjectNotFound, match="not found: file://") as caught:
        store.get("nope.jpg")
    assert isinstance(caught.value, InputInvalid)
    assert not store.exists("nope.jpg")


def test_delete_removes_and_tolerates_missing(store: LocalStorage) -> None:
    store.put("a/b.jpg", b"x", "image/jpeg")
    store.delete("a/b.jpg")
    store.delete("a/b.jpg")

    assert not store.exists("a/b.jpg")


def test_list_is_sorted_filtered_by_string_prefix_and_hides_temp_files(
    store: LocalStorage,
) -> None:
    for key in ["b/2.jpg", "a/1.jpg", "b/10.jpg", "ba.jpg", "c.jpg"]:
        store.put(key, b"x", "image/jpeg")
    (store.root / "b" / ".tmp-half-written").write_bytes(b"x")

    assert list(store.list()) == ["a/1.jpg", "b/10.jpg", "b/2.jpg", "ba.jpg", "c.jpg"]
    assert list(store.list("b")) == ["b/10.jpg", "b/2.jpg", "ba.jpg"]
    assert list(store.list("b/")) == ["b/10.jpg", "b/2.jpg"]
    assert list(store.list("b/1")) == ["b/10.jpg"]
    assert list(store.list("zzz/")) == []
    assert list(LocalStorage(store.root / "never-created").list()) == []


@pytest.mark.parametrize(
    "key", ["../escape.jpg", "a/../../b.jpg", "/etc/passwd", "a//b.jpg", "a/./b", "a\\b", ""]
)
def test_unsafe_keys_are_refused_before_touching_the_disk(store: LocalStorage, key: str) -> None:
    with pytest.raises(InputInvalid):
        store.put(key, b"x", "image/jpeg")
    with pytest.raises(InputInvalid):
        store.get(key)
    assert not (store.root.parent / "escape.jpg").exists()


def test_a_symlink_cannot_lead_a_key_outside_the_root(store: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside)

    with pytest.raises(InputInvalid, match="outside"):
        store.put("link/x.jpg", b"x", "image/jpeg")
    assert not (outside / "x.jpg").exists()


def test_prefix_with_dotdot_is_refused(store: LocalStorage) -> None:
    with pytest.raises(InputInvalid):
        list(store.list("../"))


def test_key_length_is_limited_like_s3() -> None:
    with pytest.raises(InputInvalid, match="limit is 1024"):
        check_key("a" * 1025)


def test_a_reader_never_sees_half_a_file(store: LocalStorage) -> None:
    payloads = [b"A" * 2_000_000, b"B" * 3_000_000]
    store.put("hot.png", payloads[0], "image/png")
    seen: list[tuple[int, bool]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = store.get("hot.png")
            seen.append((len(data), data in payloads))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index in range(60):
            store.put("hot.png", payloads[index % 2], "image/png")
    finally:
        stop.set()
        thread.join()
    torn = [size for size, whole in seen if not whole]
    assert len(seen) > 10 and not torn, f"{len(torn)} torn reads of {len(seen)}"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(
    store: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put("a.png", b"old", "image/png")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        store.put("a.png", b"new", "image/png")

    assert store.get("a.png") == b"old"
    assert sorted(p.name for p in store.root.iterdir()) == ["a.png"]


@pytest.mark.parametrize(
    ("location", "relative"),
    [("./out", "out"), ("{tmp}/abs", "abs"), ("file://{tmp}/uri/", "uri")],
)
def test_open_location_local_forms(
    location: str, relative: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage, prefix = open_location(location.format(tmp=tmp_path), Settings())

    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / relative).resolve()
    assert prefix == ""


@pytest.mark.parametrize("location", ["https://example.com/out/", "ftp://host/x", "file://host/x"])
def test_open_location_refuses_what_cannot_hold_outputs(location: str) -> None:
    with pytest.raises(InputInvalid):
        open_location(location, Settings())


def test_open_location_s3_gives_bucket_store_and_key_prefix() -> None:
    settings = Settings(s3_endpoint_url="http://127.0.0.1:9", s3_sse=None)
    storage, prefix = open_location("s3://bucket/run/42", settings)

    assert prefix == "run/42/"
    assert uri_for(storage, prefix + "a.webp") == "s3://bucket/run/42/a.webp"
    assert open_location("s3://bucket", settings)[1] == ""
    with pytest.raises(InputInvalid, match="no bucket"):
        open_location("s3:///key", settings)


def test_read_uri_reads_a_file_input(tmp_path: Path) -> None:
    path = tmp_path / "in put.jpg"
    path.write_bytes(b"jpeg bytes")

    assert read_uri(path.as_uri(), Settings()) == b"jpeg bytes"


def test_read_uri_missing_file_says_input_not_found(tmp_path: Path) -> None:
    uri = (tmp_path / "gone.jpg").as_uri()
    with pytest.raises(InputInvalid, match=re.escape(f"input not found: {uri}")):
        read_uri(uri, Settings())


def test_read_uri_refuses_a_file_over_the_byte_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    path.write_bytes(b"x" * 2048)

    with pytest.raises(InputTooLarge, match=r"2\.0 KiB; the limit is 1\.0 KiB"):
        read_uri(path.as_uri(), Settings(max_input_bytes=1024))


@pytest.mark.parametrize("uri", ["http://example.com/a.jpg", "gopher://x/a", "relative.jpg"])
def test_read_uri_refuses_unsupported_schemes(uri: str) -> None:
    with pytest.raises(InputInvalid):
        read_uri(uri, Settings())


def test_read_uri_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputInvalid, match="is a directory"):
        read_uri(tmp_path.as_uri(), Settings())
