"""Versioned model artifacts: manifests with sha256, per-tier variants, a local-folder
or S3 backend, a verified pull-through cache, aliases with promote and rollback.

Imports only `jobs` and `storage`; never torch or diffusers (a model folder is read
as bytes). A worker's use:

    store = ModelStore.from_settings(settings)
    local = store.pull("flux-kontext@stable")      # verified copy in the local cache
    variant = local.manifest.variant_for("a10")    # what this tier runs
    with local.in_use():                           # pinned against eviction while read
        ...load local.path with the loader for variant.kind...
"""

from model_store.cache import LocalModel
from model_store.errors import AliasError, ModelStoreError, SourceError, VersionExists
from model_store.gc import GcReport
from model_store.manifest import FileEntry, Manifest, ModelRef, Variant
from model_store.store import ModelStore
from model_store.variants import VariantSpec, default_variants, parse_variant

__all__ = [
    "AliasError",
    "FileEntry",
    "GcReport",
    "LocalModel",
    "Manifest",
    "ModelRef",
    "ModelStore",
    "ModelStoreError",
    "SourceError",
    "Variant",
    "VariantSpec",
    "VersionExists",
    "default_variants",
    "parse_variant",
]
