"""Block planning: work units aligned to the output's chunks (or shards), read with an XY halo.

A *block* is a box of whole write units (chunks, or shards for sharded zarr v3
arrays) of the output: no two blocks ever touch the same chunk or shard, so
blocks can be written concurrently without locks. Each block is read with a halo
in Y and X (never along Z, T or channels: the core denoises plane by plane) so
the tiles at its border see the same context as a whole-image pass would.

Two halo modes:

``halo=None`` (default, *exact*)
    The read box holds every tile of the whole image's tile plan that touches the
    block (:meth:`~napari_clipdenoise.inference.tile_grid.TilePlan.read_range`),
    and the worker runs the core on that window of the same plan
    (``denoise(..., window=ImageWindow(...))``): every output pixel of the block is
    computed from the same tiles, with the same blending weights and the same
    upsampling grid, as in a whole-image ``denoise()`` call, so the result is
    identical to it. (With ``tile_size=None`` a block spans whole planes in Y and
    X, which is the only way to match a one-pass plane.)
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
from ..inference.options import ALIGN, InferenceOptions
from ..inference.tile_grid import TilePlan, plan_tiles, round_up, stride

#: Default target edge (pixels) of a block in Y and X, rounded to whole write units.
DEFAULT_BLOCK_SIZE = 2048


def round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


def read_range(start: int, stop: int, tiles: TilePlan, axis: int, halo: int | None) -> tuple[int, int]:
    """The input range to read for output range ``[start, stop)`` along Y (``axis`` 0) or X (1).

    Exact mode (``halo`` None) asks the whole image's tile plan
    (:meth:`~napari_clipdenoise.inference.tile_grid.TilePlan.read_range`): every
    tile touching the range. With ``halo=N`` the range grows by N pixels each side,
    starting on the tile grid and ending on 16 pixels.
    """
    if halo is None:
        return tiles.read_range(axis, start, stop)
    length = tiles.height if axis == 0 else tiles.width
    tile = tiles.tile_height if axis == 0 else tiles.tile_width
    step = stride(tile, tiles.overlap)
    return max(0, round_down(start - halo, step)), min(length, round_up(stop + halo, ALIGN))


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
    tiles: TilePlan  # the whole image's tile plan (the core's)
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
                read.append(read_range(start, stop, self.tiles, 0, self.halo))
            elif axis == self.layout.x:
                read.append(read_range(start, stop, self.tiles, 1, self.halo))
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
    options: InferenceOptions | None = None,
    halo: int | None = None,
    block_size: int | None = None,
    whole_planes: bool = False,
    **option_overrides,
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
    options : InferenceOptions, optional
        The run's options (``option_overrides`` change single fields, e.g.
        ``tile_size=512``): the halo follows the core's tile plan of the whole image.
    halo : int, optional
        None (default): exact mode; else context pixels read on each side in Y and X.
    block_size : int, optional
        Target block edge in Y and X (pixels), rounded down to whole units (at
        least one unit). Default :data:`DEFAULT_BLOCK_SIZE`. Along other axes a
        block is one unit deep, except the channel axis, which a block always
        covers whole (RGB channels are denoised together).
    whole_planes : bool
        Blocks span whole planes in Y and X (models whose every pixel depends on the
        whole plane, such as IDF); only exact mode then.
    """
    options = InferenceOptions.build(options, **option_overrides)
    if whole_planes and halo is not None:
        raise ValueError("halo=N needs a model that can run on part of a plane; this one needs whole planes")
    shape, unit = tuple(int(s) for s in shape), tuple(int(u) for u in unit)
    if len(unit) != len(shape) or any(u < 1 for u in unit):
        raise ValueError(f"chunk/shard shape {unit} does not fit an array of shape {shape}")
    if halo is not None and (not isinstance(halo, int) or isinstance(halo, bool) or halo < 0):
        raise ValueError(f"halo must be None (exact) or a whole number of pixels >= 0, got {halo!r}")
    if block_size is None:
        block_size = DEFAULT_BLOCK_SIZE
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive number of pixels, got {block_size!r}")
    tiles = plan_tiles(
        shape[layout.y],
        shape[layout.x],
        options.tile_size,
        options.effective_overlap,
        options.pad_multiple,
        options.balance_tiles,
    )
    one_pass = options.tile_size is None or whole_planes
    block_shape = []
    for axis, (length, u) in enumerate(zip(shape, unit, strict=True)):
        if axis == layout.channel:
            size = length
        elif axis in (layout.y, layout.x):
            size = length if (one_pass and halo is None) else max(u, round_down(block_size, u))
        else:
            size = u
        block_shape.append(min(size, round_up(length, u)))
    return BlockPlan(shape, unit, tuple(block_shape), halo, tiles, layout)
