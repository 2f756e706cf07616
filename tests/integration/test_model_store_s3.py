"""The model store on a real S3 server (SeaweedFS): publish, aliases, pull, tamper, gc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.errors import ModelUnavailable, StorageUnavailable
from jobs.settings import Settings
from model_store import ModelStore
from tests.unit.test_model_store_fixtures import make_diffusers_folder, write_safetensors

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(s3_server: Any, s3_bucket: str, tmp_path: Path) -> Settings:
    return s3_server.settings(  # type: ignore[no-any-return]
        home=tmp_path / "home",
        model_store=f"s3://{s3_bucket}/models",
        model_cache=tmp_path / "cache",
    )


def test_s3_round_trip(settings: Settings, s3_server: Any, s3_bucket: str, tmp_path: Path) -> None:
    src = make_diffusers_folder(tmp_path / "src")
    # 20 MB: over boto3's 8 MB threshold, so it goes up and down as a multipart transfer.
    write_safetensors(src / "unet" / "diffusion_pytorch_model.safetensors", {"w": [1280, 4096]})
    store = ModelStore.from_settings(settings)
    manifest = store.publish(src, "pix2pix", "1")
    store.promote("pix2pix@1", "stable")

    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="models/")
    keys = {item["Key"] for item in listed["Contents"]}
    assert "models/pix2pix/1/manifest.json" in keys
    assert "models/pix2pix/aliases.json" in keys
    big = "models/pix2pix/1/files/unet/diffusion_pytorch_model.safetensors"
    head = client.head_object(Bucket=s3_bucket, Key=big)
    assert (
        head["ContentLength"] == (src / "unet/diffusion_pytorch_model.safetensors").stat().st_size
    )
    assert head.get("ServerSideEncryption") == "AES256"  # settings.s3_sse, on multipart too

    # A worker elsewhere: its own cache, the same store.
    worker = ModelStore.from_settings(settings.model_copy(update={"model_cache": tmp_path / "w"}))
    assert store.uri == worker.uri == f"s3://{s3_bucket}/models"
    local = worker.pull("pix2pix")
    assert local.manifest == manifest
    for entry in manifest.files:
        assert (local.path / entry.path).read_bytes() == (src / entry.path).read_bytes()
    assert worker.pull("pix2pix@stable").copied_bytes == 0
    assert worker.verify("pix2pix@1") == []
    assert [m.ref for m in worker.list()] == ["pix2pix@1"]


def test_s3_tampered_object_is_named(
    settings: Settings, s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    store = ModelStore.from_settings(settings)
    store.publish(make_diffusers_folder(tmp_path / "src"), "pix2pix", "1")
    key = "models/pix2pix/1/files/vae/config.json"
    s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b'{"evil": 1}')
    with pytest.raises(ModelUnavailable, match=r"file vae/config\.json in the store s3://"):
        store.pull("pix2pix@1")
    assert not store.cache.path_of("pix2pix", "1").exists()
    problems = store.verify("pix2pix@1")
    assert problems == [
        f"store s3://{s3_bucket}/models: pix2pix@1 vae/config.json does not match its sha256"
    ]


def test_s3_gc_deletes_a_dead_publish(
    settings: Settings, s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    store = ModelStore.from_settings(settings)
    store.publish(make_diffusers_folder(tmp_path / "src"), "pix2pix", "1")
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="models/pix2pix/2/files/unet/x.bin", Body=b"half")
    report = store.gc(store_grace_s=0)
    assert report.store_removed == ["pix2pix/2/files/unet/x.bin"]
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="models/pix2pix/2/")
    assert listed.get("KeyCount", 0) == 0
    assert store.verify("pix2pix@1") == []


def test_unreachable_s3_is_retryable(tmp_path: Path) -> None:
    dead = Settings(
        home=tmp_path / "home",
        model_store="s3://models/prod",
        model_cache=tmp_path / "cache",
        s3_endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        s3_access_key_id="x",
        s3_secret_access_key="y",
    )
    with pytest.raises(StorageUnavailable) as err:
        ModelStore.from_settings(dead).resolve("flux@stable")
    assert err.value.retryable
