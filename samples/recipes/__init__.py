"""Recipes darkroom ships: YAML files next to this module, loaded like any recipe file
(`darkroom submit ./shoot --recipe <path>`), and the demo's restoration recipe as data."""

from pathlib import Path
from typing import Any

RECIPES_DIR = Path(__file__).resolve().parent


def recipe_path(name: str) -> Path:
    """The file of the shipped recipe `name` (e.g. `portrait_retouch`).

    Raises:
        FileNotFoundError: no such recipe ships; the message lists those that do.
    """
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no shipped recipe {name!r}; shipped: {known}")
    return path


# The demo's restoration: repair marks first (before anything smooths them into the
# picture), then noise, then colour and tone, and sharpen last (so it does not
# sharpen noise). Tuned on the sample set; valid `jobs.schema.Recipe` data.
RESTORE_RECIPE: dict[str, Any] = {
    "name": "restore",
    "steps": [
        {"dust_scratch_removal": {"sensitivity": 0.5, "max_defect_px": 5}},
        {"denoise": {"strength": 4.0}},
        {"restore_faded_color": {"strength": 0.7}},
        {"white_balance": {"method": "shades_of_gray", "strength": 0.4}},
        {"auto_levels": {"clip_percent": 0.1}},
        {"sharpen": {"amount": 0.5, "radius": 1.2, "threshold": 4}},
    ],
}
