"""Pulls racing in real processes: complete copies only, one download, crash recovery."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from model_store import ModelStore
from model_store.cache import MARKER
from model_store.folder import sha256_file
from tests.unit.test_model_store_fixtures import (
    local_settings,
    local_store,
    make_diffusers_folder,
    write_safetensors,
)

pytestmark = pytest.mark.integration
BIG_PARAMS = [4096, 4096]  # a 64 MB unet: a pull takes long enough to race and to kill


def pull_in_child(tmp: str, ref: str, go: str, result: str) -> None:
    """Wait for the go file, pull, then hash what the pull returned (run in a child)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.001)
    local = ModelStore.from_settings(local_settings(Path(tmp))).pull(ref)
    digests = {e.path: sha256_file(local.path / e.path) for e in local.manifest.files}
    Path(result).write_text(json.dumps({"copied": local.copied_bytes, "digests": digests}))


def publish_big(tmp: Path) -> ModelStore:
    store = local_store(tmp)
    src = make_diffusers_folder(tmp / "src")
    write_safetensors(src / "unet" / "diffusion_pytorch_model.safetensors", {"w": BIG_PARAMS})
    store.publish(src, "big", "1")
    return store


def complete(path: Path, sizes: dict[str, int]) -> bool:
    return (path / MARKER).is_file() and all(
        (path / p).is_file() and (path / p).stat().st_size == n for p, n in sizes.items()
    )


def test_two_processes_pulling_at_once_both_get_one_complete_copy(tmp_path: Path) -> None:
    store = publish_big(tmp_path)
    manifest = store.resolve("big@1")
    sizes = {e.path: e.size for e in manifest.files}
    spawn = multiprocessing.get_context("spawn")
    go = tmp_path / "go"
    results = [tmp_path / f"result{i}.json" for i in range(2)]
    children = [
        spawn.Process(target=pull_in_child, args=(str(tmp_path), "big@1", str(go), str(r)))
        for r in results
    ]
    for child in children:
        child.start()
    time.sleep(1.5)  # let both children import and wait on the go file
    go.touch()
    # Meanwhile, watch the cache: whenever the copy is visible, it must be whole.
    dest = store.cache.path_of("big", "1")
    seen_partial, seen_whole = 0, 0
    while any(c.is_alive() for c in children):
        if dest.exists():
            if complete(dest, sizes):
                seen_whole += 1
            else:
                seen_partial += 1
        time.sleep(0.002)
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    outcomes = [json.loads(r.read_text()) for r in results]
    expected = {e.path: e.sha256 for e in manifest.files}
    assert all(o["digests"] == expected for o in outcomes)
    # Exactly one process downloaded; the other waited and used its copy.
    assert sorted(o["copied"] for o in outcomes) == [0, manifest.total_bytes]
    assert seen_partial == 0
    assert seen_whole > 0
    assert list((store.cache.root / ".tmp").iterdir()) == []


def test_a_pull_killed_midway_leaves_no_copy_and_no_lock(tmp_path: Path) -> None:
    store = publish_big(tmp_path)
    spawn = multiprocessing.get_context("spawn")
    go = tmp_path / "go"
    go.touch()
    child = spawn.Process(
        target=pull_in_child, args=(str(tmp_path), "big@1", str(go), str(tmp_path / "r.json"))
    )
    child.start()
    temp_root = store.cache.root / ".tmp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(temp_root.glob("big@1.*/unet")):
        time.sleep(0.001)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    assert not store.cache.path_of("big", "1").exists()  # nothing half-written is visible
    assert len(list(temp_root.iterdir())) == 1  # the abandoned download

    store.cache.lock_timeout_s = 5  # the dead process's lock must already be gone
    local = store.pull("big@1")
    assert local.copied_bytes == local.manifest.total_bytes
    assert store.verify("big@1") == []
    assert store.gc().temp_removed == 1
    assert list(temp_root.iterdir()) == []
