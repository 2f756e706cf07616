"""Recipes darkroom ships: YAML files next to this module, loaded like any recipe file
(`darkroom submit ./shoot --recipe <path>`)."""

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent


def recipe_path(name: str) -> Path:
    """The file of the shipped recipe `name` (e.g. `portrait_retouch`)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no shipped recipe {name!r}; shipped: {known}")
    return path
