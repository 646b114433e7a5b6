"""Where tiles go on a plane and how their outputs blend: pure numpy, no torch.

This module owns the tile grid. The tiler (``tiling.py``) runs a network over a
:class:`TilePlan`; the dask engine's block planner asks the same plan which
input rows and columns a block must read (:meth:`TilePlan.read_range`) and the
worker runs the core on that window of the whole image's plan
(:meth:`TilePlan.window`), so every output pixel is computed from the same tiles,
weights and upsampling grid as in a whole-image ``denoise()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .options import ALIGN, OptionError, default_overlap


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


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1D blending weight of one tile.

    Where a tile shares ``n`` pixels with a neighbour, its weight is 0 over the
    outer 7/16 of the shared part, rises linearly over the middle eighth and is 1
    beyond: each output pixel comes from the tile where it lies deepest, with a
    short crossfade so there is no seam. (Tile edges are the least accurate part
    of a tile; see docs/tiling.md.)
    """
    weight = np.ones(length, np.float32)
    for shared, side in ((before, 1), (after, -1)):
        if shared <= 0:
            continue
        distance = np.arange(shared, dtype=np.float32) + 0.5  # from this tile's edge
        band = max(shared / 8.0, 1.0)
        rising = np.clip((distance - (shared - band) / 2.0) / band, 0.0, 1.0)
        if side == 1:
            weight[:shared] = np.minimum(weight[:shared], rising)
        else:
            weight[length - shared :] = np.minimum(weight[length - shared :], rising[::-1])
    return weight


@dataclass(frozen=True)
class TileGeometry:
    """Where a batch of tiles sits in the whole (padded) image, in full-resolution pixels.

    The tiler passes one to networks that declare ``accepts_tile_geometry``: the
    CLIP decoder's ``align_corners=True`` upsampling is not translation-equivariant
    (its sampling grid depends on the whole image's size), so it samples each tile
    on the grid the whole-image pass would use.
    """

    origins: tuple[tuple[int, int], ...]  # (y, x) of each tile, multiples of 16
    full_size: tuple[int, int]  # (H, W) of the whole padded image


@dataclass(frozen=True)
class _Axis:
    """The tiling of one axis: the whole image's tile starts and the part of the axis held in memory."""

    length: int  # the whole image's length along this axis
    padded: int  # ... padded to the pad multiple
    tile: int
    all_starts: tuple[int, ...]  # every tile of the whole image, in image coordinates
    offset: int = 0  # where the data held in memory starts
    data_length: int | None = None  # how much of the axis is held (None: the whole)
    used: tuple[int, ...] | None = None  # the tiles run on the held data (None: all)

    @property
    def held(self) -> int:
        return self.length if self.data_length is None else self.data_length

    @property
    def run_starts(self) -> tuple[int, ...]:
        return self.all_starts if self.used is None else self.used

    def weights(self) -> dict[int, np.ndarray]:
        """Blending weights of the tiles run (image coordinates), normalised over all the image's tiles."""
        ramps = {}
        for i, start in enumerate(self.all_starts):
            before = self.all_starts[i - 1] + self.tile - start if i > 0 else 0
            after = start + self.tile - self.all_starts[i + 1] if i + 1 < len(self.all_starts) else 0
            ramps[start] = _ramp(self.tile, max(before, 0), max(after, 0))
        total = np.zeros(self.padded, np.float64)
        for start, ramp in ramps.items():
            total[start : start + self.tile] += ramp
        return {s: (ramps[s] / total[s : s + self.tile]).astype(np.float32) for s in self.run_starts}

    def read_range(self, begin: int, end: int) -> tuple[int, int]:
        """The data range ``[a, b)`` whose tiles compute the outputs ``[begin, end)`` exactly.

        It holds every tile that touches the outputs and, when the last of them
        reaches into the reflect padding past the image's end, the rows that padding
        copies.
        """
        touching = [s for s in self.all_starts if s < end and s + self.tile > begin]
        first, last_end = touching[0], touching[-1] + self.tile
        if last_end > self.length:
            first = min(first, max(0, 2 * self.length - last_end - 1))
        return first, min(self.length, last_end)

    def window(self, offset: int, held: int) -> _Axis:
        """The axis with only ``[offset, offset + held)`` in memory: the tiles that lie inside it."""
        end = offset + held
        if offset < 0 or end > self.length or held < 1:
            raise ValueError(f"window [{offset}, {end}) is outside the axis of length {self.length}")
        # a tile may reach past the image into the reflect padding only when the window reaches the image's end
        inside = tuple(
            s
            for s in self.all_starts
            if s >= offset and (s + self.tile <= end or (end == self.length and s + self.tile <= self.padded))
        )
        if not inside:
            raise ValueError(
                f"window [{offset}, {end}) holds no whole tile of {self.tile} px; read it with read_range()"
            )
        return replace(self, offset=offset, data_length=held, used=inside)

    def exact_range(self) -> tuple[int, int]:
        """The part of the held window (image coordinates) whose every covering tile is among those run."""
        run = set(self.run_starts)
        outside = [s for s in self.all_starts if s not in run]
        low, high = self.offset, self.offset + self.held
        for s in outside:
            if s + self.tile <= self.offset or s >= self.offset + self.held:
                continue
            if s < min(run):
                low = max(low, s + self.tile)
            else:
                high = min(high, s)
        return low, max(low, high)


def _axis(length: int, tile: int | None, overlap: int, pad_multiple: int, balance: bool) -> _Axis:
    padded = round_up(length, pad_multiple)
    if tile is None:
        return _Axis(length, padded, padded, (0,))
    tile = min(tile, padded)
    if balance:
        tile = balanced_tile(padded, tile, overlap)
    return _Axis(length, padded, tile, tuple(starts(padded, tile, stride(tile, overlap))))


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one plane go, and which part of the plane is held in memory.

    A plan made by :func:`plan_tiles` covers the whole plane. :meth:`window` gives
    the plan for a part of it read into memory (a dask block): the same tiles,
    weights and geometry, restricted to the tiles inside the part.
    """

    y: _Axis
    x: _Axis
    pixel_factor: float = field(default=1.0, compare=False)  # pixels computed per output pixel
    grid_shift: tuple[int, int] | None = None  # see on_grid()
    grid_size: tuple[int, int] | None = None
    overlap: int = field(default=0, compare=False)  # how it was planned, to plan again with smaller tiles
    pad_multiple: int = field(default=ALIGN, compare=False)
    balance: bool = field(default=True, compare=False)

    @property
    def is_whole(self) -> bool:
        """Whether this is a plan of a whole plane (not a window of a larger one, nor placed on another grid)."""
        return self.y.used is None and self.x.used is None and self.grid_shift is None

    # -------------------------------------------------------------- sizes (in the held data)
    @property
    def height(self) -> int:
        return self.y.held

    @property
    def width(self) -> int:
        return self.x.held

    @property
    def tile_height(self) -> int:
        return self.y.tile

    @property
    def tile_width(self) -> int:
        return self.x.tile

    @property
    def origin(self) -> tuple[int, int]:
        """Where the held data starts in the whole image."""
        return self.y.offset, self.x.offset

    @property
    def full_size(self) -> tuple[int, int]:
        """The whole image's padded size (the upsampling grid of a whole-image pass)."""
        return self.y.padded, self.x.padded

    @property
    def padded_height(self) -> int:
        """Rows the tiles span in the held data (the data is reflect-padded virtually up to this)."""
        return max(s + self.y.tile for s in self.y.run_starts) - self.y.offset

    @property
    def padded_width(self) -> int:
        return max(s + self.x.tile for s in self.x.run_starts) - self.x.offset

    @property
    def starts_y(self) -> tuple[int, ...]:
        """Tile rows, relative to the held data."""
        return tuple(s - self.y.offset for s in self.y.run_starts)

    @property
    def starts_x(self) -> tuple[int, ...]:
        return tuple(s - self.x.offset for s in self.x.run_starts)

    def __len__(self) -> int:
        return len(self.y.run_starts) * len(self.x.run_starts)

    @property
    def boxes(self) -> list[tuple[int, int]]:
        """Tile corners relative to the held data, row-major."""
        return [(y, x) for y in self.starts_y for x in self.starts_x]

    def geometry(self, boxes) -> TileGeometry:
        """The :class:`TileGeometry` of tiles at ``boxes`` (held-data coordinates)."""
        oy, ox = self.grid_shift or self.origin
        return TileGeometry(tuple((y + oy, x + ox) for y, x in boxes), self.grid_size or self.full_size)

    def on_grid(self, top: int, left: int, full_size: tuple[int, int]) -> TilePlan:
        """The plan of a crop, with its tiles' geometry placed at (``top``, ``left``) of a larger image.

        For crops tiled on their own (the dask engine's ``halo=N`` mode): the
        upsampling grid is the larger image's, the tiles and weights the crop's.
        """
        return replace(self, grid_shift=(int(top), int(left)), grid_size=(int(full_size[0]), int(full_size[1])))

    def blend_weights(self, axis: int) -> dict[int, np.ndarray]:
        """Per tile start (held-data coordinates): its 1D weights; ``outer(wy, wx)`` sums to 1 over the image."""
        ax = self.y if axis == 0 else self.x
        return {s - ax.offset: w for s, w in ax.weights().items()}

    def weights_1d(self, axis: int) -> dict[int, np.ndarray]:
        """Un-normalised 1D ramps per tile start (held-data coordinates); see :func:`_ramp`."""
        ax = self.y if axis == 0 else self.x
        ramps = {}
        for i, start in enumerate(ax.all_starts):
            before = ax.all_starts[i - 1] + ax.tile - start if i > 0 else 0
            after = start + ax.tile - ax.all_starts[i + 1] if i + 1 < len(ax.all_starts) else 0
            if start in ax.run_starts:
                ramps[start - ax.offset] = _ramp(ax.tile, max(before, 0), max(after, 0))
        return ramps

    # -------------------------------------------------------------- blocks of a large image
    def read_range(self, axis: int, begin: int, end: int) -> tuple[int, int]:
        """The input range along Y (0) or X (1) that computes outputs ``[begin, end)`` exactly."""
        return (self.y if axis == 0 else self.x).read_range(begin, end)

    def window(self, top: int, left: int, height: int, width: int) -> TilePlan:
        """The plan for the ``height x width`` part of the plane at (``top``, ``left``) held in memory.

        Only the whole image's tiles that lie inside it run; their outputs are
        exact on :meth:`exact_region` (pixels covered by tiles outside the part
        are not).
        """
        return replace(self, y=self.y.window(top, height), x=self.x.window(left, width))

    def exact_region(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((y0, y1), (x0, x1))`` in image coordinates where the windowed result equals the whole-image one."""
        return self.y.exact_range(), self.x.exact_range()


def tile_pair(tile_size) -> tuple[int, int] | None:
    """``tile_size`` as (height, width), validated (:class:`~.options.OptionError`); None stays None."""
    from .options import InferenceOptions

    value = InferenceOptions(tile_size=tile_size, overlap=0).tile_size
    if value is None:
        return None
    return value if isinstance(value, tuple) else (value, value)


def plan_tiles(
    height: int, width: int, tile_size, overlap: int | None = None, pad_multiple: int = ALIGN, balance: bool = True
) -> TilePlan:
    """Tile layout for a whole ``height x width`` plane.

    ``tile_size`` (an int, or a (height, width) pair) is the largest tile; None is
    one pass. Tiles shrink to the (padded) image when it is smaller; with ``balance``
    they also shrink, axis by axis, to the smallest size that needs no more tiles
    (:func:`balanced_tile`), which cuts the pixels computed twice. The stride
    ``tile - overlap`` is rounded down to a multiple of 16. ``overlap`` None is
    derived from the tile size (:func:`~.options.default_overlap`).
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty {height} x {width} plane")
    if pad_multiple < ALIGN or pad_multiple % ALIGN:
        raise OptionError("pad_multiple", f"must be a multiple of {ALIGN}, got {pad_multiple}")
    pair = tile_pair(tile_size)
    if overlap is None:
        overlap = default_overlap(tile_size)
    if pair is not None and (overlap < 0 or overlap >= min(pair)):
        raise OptionError("overlap", f"must be >= 0 and smaller than {{tile_size}} ({tile_size}), got {overlap}")
    y = _axis(height, None if pair is None else pair[0], overlap, pad_multiple, balance)
    x = _axis(width, None if pair is None else pair[1], overlap, pad_multiple, balance)
    computed = len(y.all_starts) * y.tile * len(x.all_starts) * x.tile
    return TilePlan(y, x, computed / (height * width), overlap=overlap, pad_multiple=pad_multiple, balance=balance)


def count_tiles(
    height: int, width: int, tile_size, overlap: int | None = None, pad_multiple: int = ALIGN, balance: bool = True
) -> int:
    return len(plan_tiles(height, width, tile_size, overlap, pad_multiple, balance))


def reflect_indices(length: int, padded: int) -> np.ndarray:
    """Source index of each of ``padded`` positions when a length-``length`` axis is reflect-padded at its end.

    Matches ``np.pad(..., mode="reflect")`` including repeated reflection when
    the padding is longer than the axis.
    """
    if length == 1:
        return np.zeros(padded, np.intp)
    index = np.arange(padded) % (2 * (length - 1))
    return np.where(index < length, index, 2 * (length - 1) - index)


__all__ = [
    "ALIGN",
    "TileGeometry",
    "TilePlan",
    "balanced_tile",
    "count_tiles",
    "plan_tiles",
    "reflect_indices",
    "round_up",
    "starts",
    "stride",
    "tile_pair",
]
