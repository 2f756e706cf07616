"""The tiny models themselves: small, quick to build, byte-identical on a rebuild, and
published with their preview decoders linked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytestmark = [pytest.mark.integration, pytest.mark.gen]

pytest.importorskip("diffusers")

from model_store import ModelStore  # noqa: E402
from pipelines.generative.tiny import BUILDERS, make_tiny_command  # noqa: E402

MAX_MB = 4


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_every_model_is_a_few_megabytes(tiny_models: Any) -> None:
    assert set(tiny_models.folders) == set(BUILDERS)
    for name, folder in tiny_models.folders.items():
        assert folder_bytes(folder) < MAX_MB * 2**20, f"{name} is {folder_bytes(folder)} bytes"


def test_models_are_published_as_tiny_and_stable_with_decoders_linked(tiny_models: Any) -> None:
    store = tiny_models.store
    for name in BUILDERS:
        assert store.resolve(f"{name}@stable").version == "tiny"
    assert store.resolve("kontext").components == {"tiny_decoder": "taef1@tiny"}
    assert store.resolve("ip2p").components == {"tiny_decoder": "taesd@tiny"}
    assert store.resolve("qwen-edit-plus").pipeline_class == "QwenImageEditPlusPipeline"
    assert [v.kind for v in store.resolve("kontext").variants] == ["fp32", "int8_weight_only"]


def test_the_command_builds_the_same_bytes_and_publishes_them(
    tiny_models: Any, tmp_path: Path
) -> None:
    env = {
        "DARKROOM_HOME": str(tmp_path / "home"),
        "DARKROOM_MODEL_STORE": str(tiny_models.settings.model_store_uri()),
        "DARKROOM_MODEL_CACHE": str(tmp_path / "cache"),
    }
    result = CliRunner(env=env).invoke(
        make_tiny_command, ["--out", str(tmp_path / "again"), "--publish"]
    )
    assert result.exit_code == 0, result.output
    assert f"built {len(BUILDERS)} models" in result.output
    assert "published kontext@tiny (stable)" in result.output
    # Publishing into the store that already has them is a no-op only if every byte
    # matches: the fixed seeds make the build reproducible.
    store = ModelStore.from_settings(tiny_models.settings)
    assert store.versions("kontext") == ["tiny"]
    for name, manifest in tiny_models.manifests.items():
        assert store.resolve(f"{name}@tiny").digest() == manifest.digest()
