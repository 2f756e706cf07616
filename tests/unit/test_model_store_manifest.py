"""Manifests, refs, variants and aliases: pure logic."""

from __future__ import annotations

import time

import pytest

from jobs.errors import ModelUnavailable, SchemaError
from model_store import FileEntry, Manifest, ModelRef, Variant
from model_store.aliases import AliasBook
from model_store.errors import AliasError

SHA = "ab" * 32


def manifest(**overrides: object) -> Manifest:
    fields: dict[str, object] = {
        "name": "kontext",
        "version": "1",
        "pipeline_class": "FluxKontextPipeline",
        "files": [FileEntry(path="model_index.json", sha256=SHA, size=10)],
        "variants": [
            Variant(name="fp32", kind="fp32", tiers=["cpu"], memory_gb=60),
            Variant(name="fp8", kind="fp8", tiers=["a10", "a100"], memory_gb=20),
            Variant(name="bf16", kind="bf16", tiers=["a100"], memory_gb=40),
        ],
        "created_at": time.time(),
    }
    return Manifest.model_validate(fields | overrides)


@pytest.mark.parametrize(
    ("text", "name", "selector"),
    [("flux", "flux", None), ("flux@2", "flux", "2"), ("flux@stable", "flux", "stable")],
)
def test_refs_parse(text: str, name: str, selector: str | None) -> None:
    ref = ModelRef.parse(text)
    assert (ref.name, ref.selector) == (name, selector)
    assert str(ref) == text


@pytest.mark.parametrize("text", ["", "@1", "flux@", "../etc@1", "a/b@1", "flux@1@2", "x@.."])
def test_bad_refs_are_refused(text: str) -> None:
    with pytest.raises(SchemaError):
        ModelRef.parse(text)


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "unet//x", "a\\b", "./x"])
def test_file_paths_must_stay_inside_the_model(path: str) -> None:
    with pytest.raises(ValueError, match="relative"):
        FileEntry(path=path, sha256=SHA, size=1)


def test_unknown_variant_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        Variant(name="q3", kind="q3_k_m", tiers=["edge"], memory_gb=3)


def test_variant_for_honours_preference_then_manifest_order() -> None:
    m = manifest()
    assert m.variant_for("a100").name == "fp8"
    assert m.variant_for("a100", preferred=["bf16"]).name == "bf16"
    assert m.variant_for("a100", preferred=["nf4", "bf16"]).kind == "bf16"
    # A preference the tier has no variant for falls back to what it has.
    assert m.variant_for("a10", preferred=["bf16"]).name == "fp8"
    assert m.variant_for("cpu").kind == "fp32"


def test_variant_for_a_tier_without_one_names_model_and_tier() -> None:
    with pytest.raises(ModelUnavailable, match=r"kontext@1 has no variant for tier 'edge'") as err:
        manifest().variant_for("edge")
    assert "--variant NAME:tiers=edge" in err.value.message


def test_manifest_round_trips_and_digest_tracks_content() -> None:
    m = manifest()
    again = Manifest.from_json(m.to_json(), "test")
    assert again == m
    assert again.digest() == m.digest()
    other = manifest(files=[FileEntry(path="model_index.json", sha256="cd" * 32, size=10)])
    assert other.digest() != m.digest()
    assert not other.same_release(m)
    assert manifest(created_at=1.0, source="elsewhere").same_release(m)


def test_unreadable_manifest_is_model_unavailable() -> None:
    with pytest.raises(ModelUnavailable, match=r"manifest s3://b/x/1/manifest\.json"):
        Manifest.from_json(b"{not json", "s3://b/x/1/manifest.json")


def test_aliases_promote_and_roll_back_through_history() -> None:
    book = AliasBook(name="flux")
    assert book.promote("stable", "1")
    assert book.promote("stable", "2")
    assert not book.promote("stable", "2")  # already there: history unchanged
    assert book.current("stable") == "2"
    assert book.pointing_at("2") == ["stable"]
    assert book.rollback("stable") == "1"
    assert book.current("stable") == "1"
    with pytest.raises(AliasError, match="nothing to roll back to"):
        book.rollback("stable")
    with pytest.raises(AliasError, match="no alias 'canary'"):
        book.rollback("canary")
