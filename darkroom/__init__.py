"""darkroom: queue-based distributed batch rendering for AI image edits.

This package is the composition root: the `darkroom` command, which wires the
layers (`producer`, `workers`, `model_store`) together. No layer imports it.
"""
