"""A key's image caps applied to what a recipe will make, not only to what is uploaded.

`planned_size` follows the recipe's geometry from the input's size: `resize` sets it
(exactly, or an upper bound for `fit=contain`), `crop` can only shrink it, the
generative edits keep an input's size or shrink it to their `max_side`, and
`identity_portrait` and `multi_identity` render at most `max_side` square whatever
their photos' sizes. Every other op keeps the size. The result is an upper bound on the
output's pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.errors import InputTooLarge
from jobs.schema import Recipe

if TYPE_CHECKING:
    from jobs.settings import Settings
    from producer.api_keys import ApiKey

Size = tuple[int, int]


def _resize(size: Size, params: dict[str, object]) -> Size:
    width, height = size
    target_w, target_h = params.get("width"), params.get("height")
    if isinstance(target_w, int) and isinstance(target_h, int):
        return target_w, target_h  # stretch and cover: exact; contain: inside this box
    if isinstance(target_w, int):
        return target_w, max(1, round(height * target_w / width))
    if isinstance(target_h, int):
        return max(1, round(width * target_h / height)), target_h
    return size  # max_side never upscales


def _step_size(op: str, params: dict[str, object], size: Size) -> Size:
    if op == "resize":
        return _resize(size, params)
    side = params.get("max_side")
    if op in ("identity_portrait", "multi_identity"):
        return (side, side) if isinstance(side, int) else (2048, 2048)
    return size  # crop, tone, faces and generative edits never grow an image


def planned_size(recipe: Recipe, width: int, height: int) -> Size:
    """An upper bound on the recipe's output size (width, height) for this input size."""
    size = (width, height)
    for step in recipe.steps:
        size = _step_size(step.op, step.params, size)
    return size


def pixel_cap(key: ApiKey, settings: Settings) -> int:
    return key.limits.max_image_pixels or settings.max_input_pixels


def check_output(recipe: Recipe, size: Size, key: ApiKey, settings: Settings) -> None:
    """Raises `InputTooLarge` when the recipe asks for an output over the key's pixel cap."""
    out_w, out_h = planned_size(recipe, *size)
    cap = pixel_cap(key, settings)
    if out_w * out_h > cap:
        raise InputTooLarge(
            f"the recipe makes a {out_w}x{out_h} output ({out_w * out_h / 1e6:.2f} megapixels);"
            f" this key's limit is {cap / 1e6:.2f} megapixels"
        )
