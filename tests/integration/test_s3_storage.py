"""S3Storage, open_location and read_uri against a real SeaweedFS S3 server."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from jobs.errors import InputInvalid, InputTooLarge, JobError, StorageUnavailable
from jobs.settings import Settings
from storage import ObjectNotFound, Storage, open_location, read_uri
from storage.s3 import S3Storage
from testbed.s3 import SeaweedS3

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_settings: Settings, s3_bucket: str) -> S3Storage:
    return S3Storage.from_settings(s3_bucket, "renders", s3_settings)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_put_get_exists_delete_round_trip(store: S3Storage, s3_bucket: str) -> None:
    uri = store.put("job-1/out.webp", b"webp bytes", "image/webp")

    assert uri == f"s3://{s3_bucket}/renders/job-1/out.webp"
    assert store.get("job-1/out.webp") == b"webp bytes"
    assert store.exists("job-1/out.webp")
    assert isinstance(store, Storage)

    store.delete("job-1/out.webp")
    store.delete("job-1/out.webp")  # deleting a missing key is not an error
    assert not store.exists("job-1/out.webp")


def test_objects_carry_content_type_and_sse(
    store: S3Storage, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    store.put("a.png", b"png bytes", "image/png")

    head = s3_server.client().head_object(Bucket=s3_bucket, Key="renders/a.png")

    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "image/png"


def test_sse_can_be_turned_off(s3_server: SeaweedS3, s3_bucket: str) -> None:
    settings = s3_server.settings(s3_sse=None)
    S3Storage.from_settings(s3_bucket, "", settings).put("plain.png", b"x", "image/png")

    head = s3_server.client().head_object(Bucket=s3_bucket, Key="plain.png")

    assert "ServerSideEncryption" not in head


def test_rewriting_the_same_bytes_adds_no_version_but_new_bytes_do(
    store: S3Storage, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    client = s3_server.client()
    client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})

    def versions() -> int:
        listed = client.list_object_versions(Bucket=s3_bucket, Prefix="renders/out.webp")
        return len(listed.get("Versions", []))

    store.put("out.webp", b"same bytes", "image/webp")
    store.put("out.webp", b"same bytes", "image/webp")  # a redelivered job's write
    assert versions() == 1
    store.put("out.webp", b"other bytes", "image/webp")  # a changed recipe overwrites
    assert versions() == 2
    assert store.get("out.webp") == b"other bytes"


def test_list_is_sorted_and_relative_to_the_store_prefix(
    store: S3Storage, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    for key in ["b/2.jpg", "a/1.jpg", "b/10.jpg", "ba.jpg"]:
        store.put(key, b"x", "image/jpeg")
    s3_server.client().put_object(Bucket=s3_bucket, Key="elsewhere/z.jpg", Body=b"x")

    assert list(store.list()) == ["a/1.jpg", "b/10.jpg", "b/2.jpg", "ba.jpg"]
    assert list(store.list("b/")) == ["b/10.jpg", "b/2.jpg"]
    assert list(store.list("b")) == ["b/10.jpg", "b/2.jpg", "ba.jpg"]


def test_list_pages_through_more_than_one_page(store: S3Storage) -> None:
    # SeaweedFS pages at 1000 keys, like AWS; 1005 keys need a second page.
    keys = [f"many/{index:04d}.jpg" for index in range(1005)]
    for key in keys:
        store.put(key, b"", "image/jpeg")

    assert list(store.list("many/")) == keys


def test_missing_object_and_bucket_are_object_not_found(
    store: S3Storage, s3_settings: Settings
) -> None:
    with pytest.raises(ObjectNotFound, match=r"renders/nope\.jpg"):
        store.get("nope.jpg")
    with pytest.raises(ObjectNotFound, match="no such bucket"):
        S3Storage.from_settings("no-such-bucket-here", "", s3_settings).get("a.jpg")


def test_presigned_get_works_and_tampering_is_refused(store: S3Storage) -> None:
    store.put("share/a.jpg", b"jpeg bytes", "image/jpeg")
    url = store.url("share/a.jpg", expires_s=60)

    assert http_get(url) == b"jpeg bytes"
    tampered = url.replace("share/a.jpg", "share/b.jpg")
    with pytest.raises(urllib.error.HTTPError) as refused:
        http_get(tampered)
    assert refused.value.code == 403
    forged = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(urllib.error.HTTPError):
        http_get(forged)


def test_presigned_get_expires(store: S3Storage) -> None:
    store.put("share/short.jpg", b"x", "image/jpeg")
    url = store.url("share/short.jpg", expires_s=1)

    time.sleep(2.1)

    with pytest.raises(urllib.error.HTTPError) as refused:
        http_get(url)
    assert refused.value.code == 403


def test_presign_expiry_defaults_to_settings(s3_server: SeaweedS3, s3_bucket: str) -> None:
    store = S3Storage.from_settings(s3_bucket, "", s3_server.settings(presign_expires_s=123))

    assert "X-Amz-Expires=123" in store.url("a.jpg")


def test_open_location_and_read_uri(s3_settings: Settings, s3_bucket: str) -> None:
    storage, prefix = open_location(f"s3://{s3_bucket}/batch-7/", s3_settings)
    uri = storage.put(prefix + "in.jpg", b"input bytes", "image/jpeg")

    assert uri == f"s3://{s3_bucket}/batch-7/in.jpg"
    assert read_uri(uri, s3_settings) == b"input bytes"
    assert list(storage.list(prefix)) == ["batch-7/in.jpg"]


def test_read_uri_missing_key_says_input_not_found(s3_settings: Settings, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/nothing/here.jpg"

    with pytest.raises(InputInvalid, match=re.escape(f"input not found: {uri}")):
        read_uri(uri, s3_settings)


def test_read_uri_enforces_the_byte_limit(store: S3Storage, s3_server: SeaweedS3) -> None:
    uri = store.put("big.tif", b"x" * 4096, "image/tiff")

    with pytest.raises(InputTooLarge, match=r"4\.0 KiB; the limit is 1\.0 KiB"):
        read_uri(uri, s3_server.settings(max_input_bytes=1024))


def test_wrong_credentials_end_the_job_without_retry(s3_server: SeaweedS3, s3_bucket: str) -> None:
    settings = s3_server.settings(s3_secret_access_key="wrong-secret")

    with pytest.raises(JobError, match="S3 refused to write") as refused:
        S3Storage.from_settings(s3_bucket, "", settings).put("a.jpg", b"x", "image/jpeg")
    assert not refused.value.retryable


def test_server_down_is_storage_unavailable_and_recovers(
    store: S3Storage, s3_server: SeaweedS3, s3_settings: Settings, s3_bucket: str
) -> None:
    store.put("kept.jpg", b"kept", "image/jpeg")
    s3_server.stop(kill=True)
    try:
        with pytest.raises(StorageUnavailable, match=s3_server.endpoint_url) as down:
            store.put("lost.jpg", b"x", "image/jpeg")
        assert down.value.retryable
        with pytest.raises(StorageUnavailable):
            read_uri(f"s3://{s3_bucket}/renders/kept.jpg", s3_settings)
    finally:
        s3_server.start()

    assert store.get("kept.jpg") == b"kept"
    assert store.put("after.jpg", b"x", "image/jpeg").endswith("renders/after.jpg")
