"""Tiled super-resolution: overlapping input tiles, each output tile cropped to its core.

Each tile is run with `overlap` extra input pixels on every side (clipped at the image
border) and only its core is kept, so every output pixel comes from a tile that saw at
least `overlap` pixels of context around it. Measured on the UpscalerJS models (FACTS):
0 px overlap leaves seams up to 74 levels; 16 px at most 1 level. Memory is one tile's
activations plus the uint8 output, whatever the image size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from jobs.errors import JobCanceled

Runner = Callable[[np.ndarray], np.ndarray]
"""float32 NCHW RGB 0..255 in -> float32 NCHW RGB 0..255 (unclipped), `scale` x larger."""


@dataclass(frozen=True)
class Tile:
    """One tile: `box` is the input region run (with context), `core` the part kept.

    Both are (top, bottom, left, right) in input pixels; `core` lies inside `box`.
    """

    box: tuple[int, int, int, int]
    core: tuple[int, int, int, int]


def plan(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering a `height` x `width` input with cores of at most `tile` pixels a side.

    `tile` 0 means one tile for the whole image.
    """
    if tile <= 0 or (height <= tile and width <= tile):
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    return [
        Tile(
            (
                max(0, y0 - overlap),
                min(height, y1 + overlap),
                max(0, x0 - overlap),
                min(width, x1 + overlap),
            ),
            (y0, y1, x0, x1),
        )
        for y0, y1 in _spans(height, tile)
        for x0, x1 in _spans(width, tile)
    ]


def _spans(length: int, tile: int) -> Iterator[tuple[int, int]]:
    for start in range(0, length, tile):
        yield start, min(length, start + tile)


def upscale_tiled(
    rgb: np.ndarray,
    runner: Runner,
    scale: int,
    tiles: list[Tile],
    progress: Callable[[float], None] = lambda fraction: None,
    should_stop: Callable[[], bool] = lambda: False,
    between_steps: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """`rgb` (HxWx3 uint8) upscaled `scale` x by `runner`, tile by tile, as uint8. Each
    tile is a step: `between_steps()` is called between two (`OpContext.between_steps`).

    Raises: JobCanceled when `should_stop()` turns true between tiles.
    """
    height, width = rgb.shape[:2]
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    for index, t in enumerate(tiles):
        if should_stop():
            raise JobCanceled(f"canceled after {index} of {len(tiles)} tiles")
        top, bottom, left, right = t.box
        patch = rgb[top:bottom, left:right].astype(np.float32).transpose(2, 0, 1)[None]
        result = runner(np.ascontiguousarray(patch))[0]
        ct, cb, cl, cr = t.core
        rows = slice((ct - top) * scale, (cb - top) * scale)
        cols = slice((cl - left) * scale, (cr - left) * scale)
        core = np.clip(np.rint(result[:, rows, cols]), 0, 255).astype(np.uint8)
        out[ct * scale : cb * scale, cl * scale : cr * scale] = core.transpose(1, 2, 0)
        progress((index + 1) / len(tiles))
        if index + 1 < len(tiles):
            between_steps()
    return out
