"""The model store: publish, resolve, pull, promote, roll back, verify and gc models.

The backend layout is in `layout.py`. Versions are immutable: publishing a
name@version again is a no-op when it is the same release and refused otherwise.
Workers `pull` a ref into their local cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from jobs.errors import ModelUnavailable
from jobs.settings import Settings
from jobs.tiers import DEFAULT_TIERS, Tier
from model_store import release
from model_store.aliases import AliasBook
from model_store.backends import Backend, open_backend
from model_store.cache import Fetch, LocalModel, ModelCache
from model_store.errors import AliasError, VersionExists
from model_store.gc import GcReport, collect_store
from model_store.layout import (
    aliases_key,
    file_key,
    manifest_key,
    manifest_owner,
    publishing_key,
)
from model_store.manifest import FileEntry, Manifest, ModelRef, Variant, check_name
from model_store.source import is_hub_id, local_source
from model_store.variants import VariantSpec

DEFAULT_ALIAS = "stable"


class ModelStore:
    """Published models in a backend, and this machine's pull-through cache of them."""

    def __init__(
        self,
        backend: Backend,
        cache: ModelCache,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        download_dir: Path | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.tiers = tuple(tiers)
        self.download_dir = download_dir or cache.root / ".hub"

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        cache = ModelCache(settings.model_cache_dir(), int(settings.model_cache_max_gb * 2**30))
        return cls(open_backend(settings.model_store_uri(), settings), cache, settings.tiers())

    @property
    def uri(self) -> str:
        return self.backend.uri

    # -- publishing ------------------------------------------------------------------

    def publish(
        self,
        src: Path | str,
        name: str,
        version: str,
        *,
        variants: Sequence[Variant | VariantSpec] | None = None,
        pipeline_class: str | None = None,
        license: str | None = None,
        components: dict[str, str] | None = None,
        source: str | None = None,
    ) -> Manifest:
        """Publish a model folder (or a hub id, downloaded first) as `name@version`.

        `source` is recorded as where the release came from (default: the folder or hub id).

        Raises:
            VersionExists: `name@version` is published with different content.
            SourceError: `src` cannot be read (not a folder, no files, a bad header).
            SchemaError: a name, version or variant is malformed.
        """
        # 1. the folder (a hub id is downloaded first, once the names are known good)
        check_name(name, "model name")
        check_name(version, "version")
        path = local_source(src, self.download_dir)
        source = source or (src if isinstance(src, str) and is_hub_id(src) else str(path))
        # 2. its manifest: sha256 of every file, class, variants sized from its weights
        manifest = release.describe(
            path,
            name,
            version,
            self.tiers,
            source=source,
            variants=variants,
            pipeline_class=pipeline_class,
            license=license,
            components=components,
        )
        # 3. versions are immutable: same release is a no-op, anything else is refused
        existing = self._load(name, version)
        if existing is not None:
            if existing.same_release(manifest):
                return existing
            raise VersionExists(
                f"{manifest.ref} is already published in {self.uri} with different "
                "content; versions are immutable, publish under a new version"
            )
        # 4. upload the files, then the manifest last: readers never see a partial version
        self.backend.write(
            publishing_key(name, version), json.dumps({"started_at": time.time()}).encode()
        )
        for entry in manifest.files:
            self.backend.upload(file_key(name, version, entry.path), path / entry.path)
        self.backend.write(manifest_key(name, version), manifest.to_json())
        self.backend.delete(publishing_key(name, version))
        return manifest

    # -- reading ---------------------------------------------------------------------

    def _load(self, name: str, version: str) -> Manifest | None:
        raw = self.backend.read(manifest_key(name, version))
        if raw is None:
            return None
        return Manifest.from_json(raw, f"{self.uri}/{manifest_key(name, version)}")

    def versions(self, name: str) -> list[str]:
        """Published versions of `name`, oldest first."""
        found = [m for m in (self._load(name, v) for v in self._version_keys(name)) if m]
        return [m.version for m in sorted(found, key=lambda m: m.created_at)]

    def _version_keys(self, name: str) -> list[str]:
        owners = (manifest_owner(key) for key in self.backend.walk(f"{name}/"))
        return [owner[1] for owner in owners if owner is not None]

    def aliases(self, name: str) -> AliasBook:
        raw = self.backend.read(aliases_key(name))
        return AliasBook.model_validate_json(raw) if raw else AliasBook(name=name)

    def resolve(self, ref: str) -> Manifest:
        """`name@version`, `name@alias`, or `name` (its stable alias, else its latest version).

        Raises:
            ModelUnavailable: nothing is published under `ref`.
        """
        parsed = ModelRef.parse(ref)
        if parsed.selector is not None:
            manifest = self._load(parsed.name, parsed.selector)
            if manifest is not None:
                return manifest
            version = self.aliases(parsed.name).current(parsed.selector)
        else:
            version = self.aliases(parsed.name).current(DEFAULT_ALIAS)
            if version is None:
                published = self.versions(parsed.name)
                version = published[-1] if published else None
        manifest = self._load(parsed.name, version) if version else None
        if manifest is None:
            raise self._unavailable(parsed)
        return manifest

    def _unavailable(self, ref: ModelRef) -> ModelUnavailable:
        published = self.versions(ref.name)
        have = f" (published versions: {', '.join(published)})" if published else ""
        return ModelUnavailable(
            f"model {ref} is not in the model store {self.uri}{have}; publish it with "
            f"`darkroom models publish DIR --name {ref.name} --version VERSION`"
        )

    # -- pulling ---------------------------------------------------------------------

    def pull(self, ref: str) -> LocalModel:
        """A verified local copy of `ref`, downloaded only if the cache has no intact one.

        Raises:
            ModelUnavailable: `ref` is not published, or a file is missing from the store
                or does not match its sha256.
        """
        manifest = self.resolve(ref)
        cache = self.cache
        with cache.locked(manifest, shared=True):
            if cache.is_intact(manifest):
                cache.touch(manifest)
                return cache.local(manifest)
        with cache.locked(manifest, shared=False):
            # Another process may have pulled it while we waited for the lock.
            if cache.is_intact(manifest):
                cache.touch(manifest)
                return cache.local(manifest)
            copied = cache.install(manifest, self._fetcher(manifest), self.uri)
        cache.evict(keep=frozenset({manifest.ref}))
        return cache.local(manifest, copied)

    def local_path(self, ref: str) -> Path:
        """The folder of `ref`'s verified local copy (see `pull`): the store as a
        `pipelines.base.ModelFiles`.

        Raises:
            ModelUnavailable: `ref` is not published, or a file is missing from the store.
        """
        return self.pull(ref).path

    def _fetcher(self, manifest: Manifest) -> Fetch:
        def fetch(entry: FileEntry, target: Path) -> None:
            if not self.backend.download(
                file_key(manifest.name, manifest.version, entry.path), target
            ):
                raise ModelUnavailable(
                    f"model {manifest.ref}: file {entry.path} is missing from the store "
                    f"{self.uri}; restore it or publish a new version"
                )

        return fetch

    # -- aliases ---------------------------------------------------------------------

    def promote(self, ref: str, alias: str) -> None:
        """Point `name@alias` at the version `ref` resolves to.

        Raises:
            AliasError: `alias` is the name of a version.
            ModelUnavailable: `ref` is not published.
        """
        manifest = self.resolve(ref)
        check_name(alias, "alias")
        if self._load(manifest.name, alias) is not None:
            raise AliasError(f"{alias!r} is a version of {manifest.name}; pick another alias name")
        book = self.aliases(manifest.name)
        if book.promote(alias, manifest.version):
            self.backend.write(aliases_key(manifest.name), book.model_dump_json(indent=2).encode())

    def rollback(self, name: str, alias: str) -> str:
        """Point `name@alias` back at its previous version; returns that version.

        Raises:
            AliasError: the alias has no earlier version, or it is gone from the store.
        """
        book = self.aliases(check_name(name, "model name"))
        previous = book.rollback(alias)
        if self._load(name, previous) is None:
            raise AliasError(
                f"{name}@{alias} would go back to {previous}, which is not in {self.uri}"
            )
        self.backend.write(aliases_key(name), book.model_dump_json(indent=2).encode())
        return previous

    # -- checking and cleaning -------------------------------------------------------

    def verify(self, ref: str) -> list[str]:
        """Every problem with `ref`: store files missing or not matching their sha256,
        components not published, a damaged cached copy. Empty means all is well."""
        manifest = self.resolve(ref)
        problems = []
        for entry in manifest.files:
            got = self.backend.digest(file_key(manifest.name, manifest.version, entry.path))
            if got is None:
                problems.append(f"store {self.uri}: {manifest.ref} {entry.path} is missing")
            elif got != (entry.sha256, entry.size):
                problems.append(
                    f"store {self.uri}: {manifest.ref} {entry.path} does not match its sha256"
                )
        for role, component in sorted(manifest.components.items()):
            try:
                self.resolve(component)
            except ModelUnavailable:
                problems.append(f"{manifest.ref} component {role} = {component} is not published")
        if self.cache.path_of(manifest.name, manifest.version).exists():
            with self.cache.locked(manifest, shared=True):
                problems += self.cache.damaged_files(manifest)
        return problems

    def gc(self, store_grace_s: float = 6 * 3600, *, store: bool = True) -> GcReport:
        """Cache: drop abandoned downloads, evict LRU copies over the cap. Store (unless
        `store` is False, e.g. for a worker with read-only credentials): delete files no
        manifest references (publishes that died more than `store_grace_s` ago, stray
        files beside published versions)."""
        report = GcReport(temp_removed=self.cache.clean_temp())
        evicted = self.cache.evict()
        report.evicted = [e.ref for e in evicted]
        report.freed_bytes = sum(e.size for e in evicted)
        if store:
            report.store_removed = collect_store(self.backend, store_grace_s)
        report.cache_bytes = sum(e.size for e in self.cache.entries())
        return report

    # `list` last: inside the class body its name shadows the builtin in annotations.
    def list(self) -> list[Manifest]:
        """Every published version of every model, by name then age."""
        owners = (manifest_owner(key) for key in self.backend.walk())
        loaded = (self._load(*owner) for owner in owners if owner is not None)
        found = [manifest for manifest in loaded if manifest is not None]
        return sorted(found, key=lambda m: (m.name, m.created_at))
