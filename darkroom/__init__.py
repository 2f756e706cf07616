"""darkroom: queue-based distributed batch rendering for AI image edits.

This package is the composition root: the `darkroom` command (`cli`, whose subcommands
live in their layers and load lazily), the API process (`api`), the `darkroom models`
and `darkroom down` commands (`models`, `local`) and the demo (`demo`), which wire the
layers together. It holds no domain code and no layer imports it; sample photos and
recipes live in `samples`.
"""
