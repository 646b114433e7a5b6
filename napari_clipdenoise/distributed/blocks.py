"""Block planning: work units aligned to the output's chunks (or shards), read with an XY halo.

A *block* is a box of whole write units (chunks, or shards for sharded zarr v3
arrays) of the output: no two blocks ever touch the same chunk or shard, so
blocks can be written concurrently without locks. Each block is read with a halo
in Y and X (never along Z, T or channels: the core denoises plane by plane) so
the tiles at its border see the same context as a whole-image pass would.

Two halo modes:

``halo=None`` (default, *exact*)
    The read box starts on the core's tile grid (a multiple of the tile stride)
    at least one effective overlap before the block, and ends exactly where a
    grid tile ends, at least one effective overlap after it. Every output pixel
    of the block is then computed from the same tiles, with the same blending
    weights and the same upsampling grid, as in a whole-image ``denoise()`` call:
    the result is identical to it. (With ``tile_size=None`` a block spans whole
    planes in Y and X, which is the only way to match a one-pass plane.)
``halo=N`` (pixels)
    The read box extends ``N`` pixels each side (start on the tile grid, end on
    16 pixels). With ``N >= overlap`` the result differs from the whole-image
    pass at most by the core's own tiling error (docs/tiling.md).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from ..inference.axes import AxesLayout
from ..inference.tile_grid import ALIGN, balanced_tile, round_up
from ..inference.tile_grid import starts as tile_starts
from ..inference.tile_grid import stride as tile_stride

#: Default target edge (pixels) of a block in Y and X, rounded to whole write units.
DEFAULT_BLOCK_SIZE = 2048


def round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


@dataclass(frozen=True)
class AxisTiling:
    """The core's tiling along Y or X of an array: tile length and stride (see ``plan_tiles``)."""

    length: int
    tile: int | None  # None: one pass over the whole axis
    stride: int

    def tile_to_request(self, tile_size: int) -> int:
        """What to pass the core (with ``balance_tiles=False``) so that it tiles exactly like this.

        ``self.tile``, except where one tile spans the whole padded axis: there the
        user's ``tile_size`` goes through, which the core clips to the same length
        (and which, unlike the clipped tile, is still larger than the overlap).
        """
        return tile_size if self.tile >= round_up(self.length, ALIGN) else self.tile


def axis_tiling(length: int, tile_size: int | None, overlap: int) -> AxisTiling:
    """Mirror of :func:`napari_clipdenoise.inference.tiling.plan_tiles` for one axis of the whole array.

    The tile is clipped to the padded length and balanced like ``denoise()`` does
    for the whole image (:func:`~napari_clipdenoise.inference.tiling.balanced_tile`);
    the stride ``tile - overlap`` is rounded down to a multiple of 16 (at least 16).
    Blocks then run with exactly this tile (``balance_tiles=False``), so every block
    lies on the whole image's tile grid.
    """
    if tile_size is None:
        return AxisTiling(length, None, ALIGN)
    padded = round_up(length, ALIGN)
    tile = balanced_tile(padded, min(tile_size, padded), overlap)
    return AxisTiling(length, tile, tile_stride(tile, overlap))


def read_range(start: int, stop: int, tiling: AxisTiling, halo: int | None) -> tuple[int, int]:
    """The input range to read for output range ``[start, stop)`` along Y or X."""
    length = tiling.length
    if tiling.tile is None and halo is None:
        return 0, length  # a one-pass plane can only be matched by the whole plane
    stride = tiling.stride
    if halo is None:
        # exact: read every tile of the whole image's plan that overlaps the output range. The
        # block's own plan over that range then places exactly those tiles (a run of grid tiles,
        # plus the image's last, edge-flush tile when it is among them), and every output pixel
        # gets the same tiles with the same blending weights as in a whole-image pass.
        tiles = [
            s for s in tile_starts(round_up(length, ALIGN), tiling.tile, stride) if s < stop and s + tiling.tile > start
        ]
        return tiles[0], min(length, tiles[-1] + tiling.tile)
    return max(0, round_down(start - halo, stride)), min(length, round_up(stop + halo, ALIGN))


@dataclass(frozen=True)
class Block:
    """One work unit.

    ``core`` is the box of the output this block writes; ``read`` the (larger)
    box of the input it reads, both as tuples of ``(start, stop)`` per axis.
    """

    index: tuple[int, ...]
    core: tuple[tuple[int, int], ...]
    read: tuple[tuple[int, int], ...]

    @property
    def key(self) -> str:
        """A stable, file-name-safe name, e.g. ``"0.3.1"`` (block indices per axis)."""
        return ".".join(str(i) for i in self.index)

    def core_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.core)

    def read_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.read)

    def crop_slices(self) -> tuple[slice, ...]:
        """Where ``core`` lies inside the array read with ``read``."""
        return tuple(slice(c0 - r0, c1 - r0) for (c0, c1), (r0, _) in zip(self.core, self.read, strict=True))

    @property
    def size(self) -> int:
        return math.prod(b - a for a, b in self.core)


@dataclass(frozen=True)
class BlockPlan:
    """How an array of ``shape`` is cut into blocks."""

    shape: tuple[int, ...]
    unit: tuple[int, ...]  # the write unit: chunk or shard shape
    block_shape: tuple[int, ...]
    halo: int | None  # None: exact mode (module docstring)
    tiling: tuple[AxisTiling, AxisTiling]  # Y, X
    layout: AxesLayout

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block_shape, strict=True))

    def __len__(self) -> int:
        return math.prod(self.grid)

    def __iter__(self):
        for index in itertools.product(*(range(n) for n in self.grid)):
            yield self.block(index)

    def block(self, index: tuple[int, ...]) -> Block:
        core, read = [], []
        for axis, (i, size, length) in enumerate(zip(index, self.block_shape, self.shape, strict=True)):
            start, stop = i * size, min(length, (i + 1) * size)
            core.append((start, stop))
            if axis == self.layout.y:
                read.append(read_range(start, stop, self.tiling[0], self.halo))
            elif axis == self.layout.x:
                read.append(read_range(start, stop, self.tiling[1], self.halo))
            else:
                read.append((start, stop))
        return Block(tuple(index), tuple(core), tuple(read))

    def read_fraction(self) -> float:
        """Pixels read (with halos) per pixel written: the halo's cost."""
        read = sum(math.prod(b - a for a, b in block.read) for block in self)
        return read / math.prod(self.shape)


def plan_blocks(
    shape: tuple[int, ...],
    unit: tuple[int, ...],
    layout: AxesLayout,
    *,
    tile_size: int | None,
    overlap: int,
    halo: int | None = None,
    block_size: int | None = None,
) -> BlockPlan:
    """Cut an array into blocks of whole write units.

    Parameters
    ----------
    shape : tuple of int
        The array's shape.
    unit : tuple of int
        The write unit per axis: the chunk shape, or the shard shape of a sharded array.
    layout : AxesLayout
        Where Y, X and the channel axis are (``parse_axes``).
    tile_size, overlap : int
        The core's tiling (as passed to ``denoise``), used to size and align the halo.
    halo : int, optional
        None (default): exact mode; else context pixels read on each side in Y and X.
    block_size : int, optional
        Target block edge in Y and X (pixels), rounded down to whole units (at
        least one unit). Default :data:`DEFAULT_BLOCK_SIZE`. Along other axes a
        block is one unit deep, except the channel axis, which a block always
        covers whole (RGB channels are denoised together).
    """
    shape, unit = tuple(int(s) for s in shape), tuple(int(u) for u in unit)
    if len(unit) != len(shape) or any(u < 1 for u in unit):
        raise ValueError(f"chunk/shard shape {unit} does not fit an array of shape {shape}")
    if halo is not None and (not isinstance(halo, int) or isinstance(halo, bool) or halo < 0):
        raise ValueError(f"halo must be None (exact) or a whole number of pixels >= 0, got {halo!r}")
    if block_size is None:
        block_size = DEFAULT_BLOCK_SIZE
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive number of pixels, got {block_size!r}")
    tiling = (axis_tiling(shape[layout.y], tile_size, overlap), axis_tiling(shape[layout.x], tile_size, overlap))
    block_shape = []
    for axis, (length, u) in enumerate(zip(shape, unit, strict=True)):
        if axis == layout.channel:
            size = length
        elif axis in (layout.y, layout.x):
            size = length if (tile_size is None and halo is None) else max(u, round_down(block_size, u))
        else:
            size = u
        block_shape.append(min(size, round_up(length, u)))
    return BlockPlan(shape, unit, tuple(block_shape), halo, tiling, layout)
