"""Where IDF's exact streamed run puts its tiles, and how many progress units it reports: no torch.

The pipeline counts a run's progress before it imports torch (a widget plans a
run while a model is only selected), so this arithmetic lives apart from
:mod:`.idf`.
"""

from __future__ import annotations

import math

import numpy as np

#: Passes of the shared block (the authors' default; no early stop).
DEFAULT_ITERATIONS = 10


def _tile_bounds(n: int, tile: int) -> list[tuple[int, int]]:
    """Split 0..n into ceil(n / tile) nearly equal parts."""
    count = max(1, math.ceil(n / tile))
    edges = [round(k * n / count) for k in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _single_tile(height: int, width: int, tile_size: int | None) -> bool:
    return tile_size is None or (height <= tile_size and width <= tile_size)


def count_tile_steps(height: int, width: int, tile_size: int | None, *, iterations: int = DEFAULT_ITERATIONS) -> int:
    """How many units :func:`denoise_plane` reports through ``on_tiles`` in total.

    One per iteration for a whole-image run (``tile_size`` None or at least the image), otherwise
    two passes per iteration over ``ceil(H / t) * ceil(W / t)`` tiles.
    """
    if _single_tile(height, width, tile_size):
        return iterations
    _check_tile_size(tile_size)
    return 2 * iterations * len(_tile_bounds(height, tile_size)) * len(_tile_bounds(width, tile_size))


def _check_tile_size(tile_size) -> None:
    if not isinstance(tile_size, (int, np.integer)) or isinstance(tile_size, bool) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer or None, got {tile_size!r}")
