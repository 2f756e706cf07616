"""Everything that creates jobs: recipes, sources, batches, reports and the CLI.

Depends on `jobs` and `storage` only; never imports torch, diffusers, `workers` or
`pipelines`, so `darkroom submit` starts fast. Nothing imports this package.
"""

from producer.batch import BatchHandle, BatchProgress, batch_results, submit_batch, wait_for_batch
from producer.recipes import LoadedRecipe, load_recipe, parse_op, recipe_from_ops
from producer.sources import SourceItem, expand_sources

__all__ = [
    "BatchHandle",
    "BatchProgress",
    "LoadedRecipe",
    "SourceItem",
    "batch_results",
    "expand_sources",
    "load_recipe",
    "parse_op",
    "recipe_from_ops",
    "submit_batch",
    "wait_for_batch",
]
