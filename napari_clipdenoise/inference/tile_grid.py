"""Where tiles go along one axis: pure integer arithmetic, importable without torch.

Shared by the tiler (``tiling.py``) and the dask engine's block planner, which
must put its blocks on exactly the tile grid a whole-image ``denoise()`` uses.
"""

from __future__ import annotations

ALIGN = 16  # the network's size multiple; tiles start on multiples of it


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def stride(tile: int, overlap: int) -> int:
    """Distance between tile starts: ``tile - overlap`` rounded down to a multiple of 16 (at least 16)."""
    return max(ALIGN, (tile - overlap) // ALIGN * ALIGN)


def starts(padded: int, tile: int, step: int) -> list[int]:
    """Tile starts every ``step`` pixels, the last tile flush with the (padded) end."""
    positions = list(range(0, padded - tile + 1, step))
    if positions[-1] != padded - tile:
        positions.append(padded - tile)
    return positions


def balanced_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile (a multiple of 16, at most ``tile``) that covers ``length`` with as few tiles as ``tile`` does.

    With a fixed tile the last one is pushed flush with the edge and can overlap its
    neighbour far more than ``overlap``: a 2048 px axis takes three 1024 px tiles
    (3072 px computed). Three 864 px tiles cover it too (2592 px), so that is the
    tile used. ``length`` is the padded axis length (a multiple of 16).
    """
    if length <= tile:
        return length
    count = len(starts(length, tile, stride(tile, overlap)))
    for candidate in range(round_up(overlap + 1, ALIGN), tile, ALIGN):
        if len(starts(length, candidate, stride(candidate, overlap))) <= count:
            return candidate
    return tile
