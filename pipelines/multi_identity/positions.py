"""UNO's universal rotary position embedding (UnoPE): where each reference's tokens sit.

FLUX gives every latent token a 3-axis rotary id (index, row, column); the target
image's tokens take rows 0..h-1 and columns 0..w-1 of its packed 2x2 grid. FLUX.1
Kontext places its one reference on the same grid with the index axis set to 1. UNO
(Wu et al. 2025, arXiv:2504.02160, section 3.3 and its `prepare_multi_ip`) keeps the
index at 0 and instead shifts each reference diagonally past everything before it:
the first starts at (h, w), the next at (h + h1, w + w1), and so on. The model thus
sees references as separate images laid beyond the target, and not as copies of its
layout, which UNO found reduces copy-paste of the references' composition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Grid = tuple[int, int]
"""(rows, columns) of a packed latent grid: pixels / 16 for FLUX."""


def grid_ids(grid: Grid, offset: Grid = (0, 0)) -> torch.Tensor:
    """(rows * columns, 3) float ids: index 0, row + offset, column + offset."""
    rows, columns = grid
    ids = torch.zeros(rows, columns, 3)
    ids[..., 1] = torch.arange(rows)[:, None] + offset[0]
    ids[..., 2] = torch.arange(columns)[None, :] + offset[1]
    return ids.reshape(rows * columns, 3)


def reference_offsets(target: Grid, references: Sequence[Grid]) -> list[Grid]:
    """Each reference's (row, column) start: diagonally after the target and every
    reference before it."""
    offsets = []
    row, column = target
    for rows, columns in references:
        offsets.append((row, column))
        row, column = row + rows, column + columns
    return offsets


def uno_ids(target: Grid, references: Sequence[Grid]) -> torch.Tensor:
    """The ids of the whole token sequence: target grid first, then each reference's."""
    offsets = reference_offsets(target, references)
    parts = [grid_ids(target)]
    parts += [grid_ids(grid, offset) for grid, offset in zip(references, offsets, strict=True)]
    return torch.cat(parts)
