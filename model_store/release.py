"""Turning a model folder into the manifest of a release: files, class, variants, components."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from jobs.errors import SchemaError
from jobs.tiers import Tier
from model_store import folder
from model_store.errors import SourceError
from model_store.manifest import FileEntry, Manifest, ModelRef, Variant, check_name
from model_store.variants import VariantSpec, default_variants


def describe(
    path: Path,
    name: str,
    version: str,
    tiers: Sequence[Tier],
    *,
    source: str,
    variants: Sequence[Variant | VariantSpec] | None = None,
    pipeline_class: str | None = None,
    license: str | None = None,
    components: dict[str, str] | None = None,
) -> Manifest:
    """The manifest for publishing the folder `path` as `name@version` (hashes every file)."""
    check_name(name, "model name")
    check_name(version, "version")
    entries = folder.scan(path)
    params = folder.parameter_count(path, entries)
    return Manifest(
        name=name,
        version=version,
        pipeline_class=_pipeline_class(pipeline_class, path),
        license=license or folder.license_of(path),
        source=source,
        files=entries,
        variants=_variants(variants, params, entries, tiers),
        created_at=time.time(),
        components=_components(components or {}),
    )


def _pipeline_class(given: str | None, path: Path) -> str:
    found = given or folder.pipeline_class_of(path)
    if not found:
        raise SourceError(
            f"{path} has no model_index.json or config.json naming its class; give --pipeline-class"
        )
    return found


def _variants(
    given: Sequence[Variant | VariantSpec] | None,
    params: int,
    entries: list[FileEntry],
    tiers: Sequence[Tier],
) -> list[Variant]:
    if not given:
        return default_variants(params, tiers)
    built = [v.build(params, entries, tiers) if isinstance(v, VariantSpec) else v for v in given]
    known_tiers = {t.name for t in tiers}
    published = set(entries)
    for variant in built:
        unknown = sorted(set(variant.tiers) - known_tiers)
        if unknown:
            raise SchemaError(
                f"variant {variant.name}: unknown tier(s) {', '.join(unknown)}; "
                f"configured: {', '.join(sorted(known_tiers))}"
            )
        if not set(variant.files) <= published:
            raise SchemaError(f"variant {variant.name}: its files must be files of the folder")
    names = [v.name for v in built]
    if len(set(names)) != len(names):
        raise SchemaError(f"variant names must be unique: {', '.join(names)}")
    return built


def _components(components: dict[str, str]) -> dict[str, str]:
    for role, ref in components.items():
        check_name(role, "component role")
        ModelRef.parse(ref)
    return components
