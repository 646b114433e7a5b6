"""``planes="ortho"``: denoise a volume's XY, XZ and YZ planes with the 2D network and average them.

The network is 2D; a near-isotropic volume denoised XY plane by plane gets
independent errors from slice to slice (flicker along Z). Here every Z x Y x X
volume of the image (one per time point, per channel group) is denoised three
times, as XY planes (Y x X, one per z), XZ planes (Z x X, one per y) and YZ planes
(Z x Y, one per x), and the three results are averaged in float32 before the cast
to the output dtype. It costs about three times the network work of ``"xy"``
(``benchmarks/ortho.py`` measures it).

Memory bounds (what is guaranteed)
----------------------------------
As in ``"xy"`` mode the result goes to ``out`` (or a new array of the output
dtype), the network runs tile by tile, and the input is read plane by plane for
the XY pass. On top of that, ortho mode needs:

* one float32 accumulator of one 3D volume of one channel group (4 bytes per voxel,
  12 for an RGB group), for one volume and one group at a time;
* for the XZ and YZ passes, the input in slabs: in-memory (numpy) inputs are
  sliced as views (no copy); lazy inputs (dask, zarr, memory maps, DICOM and NIfTI
  volumes read slice by slice) are read in slabs of at most :data:`SLAB_BYTES`
  (at least one row or column), so each input chunk is read about
  ``1 + 2 * chunk_size / slab_size`` times in all.

For in-memory inputs the accumulator is in RAM. For lazy inputs it is a
temporary file (``tempfile``'s folder, ``$TMPDIR``), so RAM stays bounded by the
tile, one slab and one plane, as in ``"xy"`` mode, whatever the volume's size; the
disk holds 4 bytes per voxel of one volume while it runs and nothing after.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from ..errors import DenoiseCancelled
from .normalize import to_dtype
from .options import InferenceOptions, OptionError
from .planes import check_finite, network_input
from .tile_grid import TilePlan, plan_tiles

#: Largest slab of a lazy input read at once for the XZ and YZ passes.
SLAB_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OrthoPlan:
    """Which axis is Z, which volumes there are, and the tiles of each plane orientation."""

    z_axis: int
    outer_axes: tuple[int, ...]  # plane axes other than Z (e.g. T): one volume per index over them
    volumes: list[tuple[int, ...]]
    depth: int
    height: int
    width: int
    tiles: dict[str, TilePlan]  # "xy" (Y x X), "xz" (Z x X), "yz" (Z x Y)
    steps: dict[str, int]  # progress units per plane of each pass (the model family's, runners.steps_per_plane)

    @property
    def tiles_per_volume(self) -> int:
        """Progress units of one channel group of one volume, all three passes."""
        return self.depth * self.steps["xy"] + self.height * self.steps["xz"] + self.width * self.steps["yz"]

    def describe(self) -> str:
        return (
            f"planes ortho: XY ({self.depth} planes), XZ ({self.height}) and YZ ({self.width}) denoised and averaged"
            f" in float32, {len(self.volumes)} volume(s)"
        )


def plan_ortho(layout, shape: tuple[int, ...], options: InferenceOptions, family: str = "clip") -> OrthoPlan:
    """The ortho plan of an image; OptionError naming ``planes`` when it has no Z axis to cut along."""
    z_axes = [a for a in layout.planes if layout.axes[a] == "Z"]
    if not z_axes:
        raise OptionError(
            "planes",
            f"'ortho' needs a volume with a Z axis, and axes {layout.axes} have none; name the slice axis Z"
            " (e.g. axes ZYX) or use planes='xy'",
        )
    z_axis = z_axes[0]
    depth, height, width = shape[z_axis], shape[layout.y], shape[layout.x]
    if depth < 2:
        raise OptionError("planes", f"'ortho' needs at least 2 slices along Z, got {depth}; use planes='xy'")
    outer = tuple(a for a in layout.planes if a != z_axis)
    volumes = list(itertools.product(*(range(shape[a]) for a in outer)))
    pad, overlap, balance = options.pad_multiple, options.effective_overlap, options.balance_tiles

    def tiles(rows: int, cols: int) -> TilePlan:
        return plan_tiles(rows, cols, options.tile_size, overlap, pad, balance)

    from .runners import steps_per_plane

    plans = {"xy": tiles(height, width), "xz": tiles(depth, width), "yz": tiles(depth, height)}
    sizes = {"xy": (height, width), "xz": (depth, width), "yz": (depth, height)}
    steps = {k: steps_per_plane(family, *sizes[k], options, plans[k]) for k in plans}
    return OrthoPlan(z_axis, outer, volumes, depth, height, width, plans, steps)


def is_lazy(image) -> bool:
    """Inputs not held in RAM as a plain numpy array (memory maps count as lazy)."""
    return not isinstance(image, np.ndarray) or isinstance(image, np.memmap)


class _Volume:
    """Reads ``C x Z x Y x X`` pieces of one volume (fixed indices on the outer axes)."""

    def __init__(self, image, layout, ortho: OrthoPlan, outer: tuple[int, ...]):
        self.image, self.layout, self.ortho, self.outer = image, layout, ortho, outer

    def key(self, channels: slice, rows: slice = slice(None), cols: slice = slice(None)) -> tuple:
        key: list = [slice(None)] * len(self.layout.axes)
        for axis, index in zip(self.ortho.outer_axes, self.outer, strict=True):
            key[axis] = index
        if self.layout.channel is not None:
            key[self.layout.channel] = channels
        key[self.layout.y], key[self.layout.x] = rows, cols
        return tuple(key)

    def read(self, channels: slice, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        piece = np.asarray(self.image[self.key(channels, rows, cols)])
        kept = [a for a in range(len(self.layout.axes)) if a not in self.ortho.outer_axes]
        present = ([self.layout.channel] if self.layout.channel is not None else []) + [
            self.ortho.z_axis,
            self.layout.y,
            self.layout.x,
        ]
        piece = np.transpose(piece, [kept.index(a) for a in present])
        return piece if self.layout.channel is not None else piece[np.newaxis]


@contextlib.contextmanager
def _accumulator(shape: tuple[int, ...], on_disk: bool):
    """A zeroed float32 array: in RAM, or a temporary file removed afterwards."""
    if not on_disk:
        yield np.zeros(shape, np.float32)
        return
    with tempfile.TemporaryDirectory(prefix="clipdenoise-ortho-") as folder:
        array = np.memmap(os.path.join(folder, "accumulator.f32"), dtype=np.float32, mode="w+", shape=shape)
        try:
            yield array
        finally:
            mm = getattr(array, "_mmap", None)
            del array
            if mm is not None:
                mm.close()


def _slabs(length: int, bytes_per_index: int, lazy: bool) -> list[slice]:
    if not lazy:
        return [slice(0, length)]
    step = max(1, SLAB_BYTES // max(1, bytes_per_index))
    return [slice(start, min(length, start + step)) for start in range(0, length, step)]


def denoise_ortho(image, plan, runner, result, reader, *, progress=None, should_stop=lambda: False):
    """Carry out an ortho plan (called by :func:`~.pipeline.denoise`); returns ``result``."""
    layout, ortho = plan.layout, plan.ortho
    lazy = is_lazy(image)
    total, done = plan.total_tiles, 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress(done, total)

    def check() -> None:
        if should_stop():
            raise DenoiseCancelled("denoising was cancelled")

    if progress:
        progress(0, total)
    for outer in ortho.volumes:
        volume = _Volume(image, layout, ortho, outer)
        fixed = dict(zip(ortho.outer_axes, outer, strict=True))
        planes = [tuple(z if a == ortho.z_axis else fixed[a] for a in layout.planes) for z in range(ortho.depth)]
        copied = [(c, c + 1) for c in plan.passthrough] + [
            (g.channels[0], g.channels[-1] + 1) for g in plan.groups if g.scale.is_constant
        ]
        for index in planes if copied else ():  # alpha and constant channels: copied unchanged
            check()
            plane = reader(index)
            check_finite(plane, f"at plane {index}")
            for start, stop in copied:
                _write(result, reader, index, slice(start, stop), plane[start:stop], plan.output_dtype)
        for group in plan.groups:
            if group.scale.is_constant:
                continue
            channels = slice(group.channels[0], group.channels[-1] + 1)
            shape = (len(group.channels), ortho.depth, ortho.height, ortho.width)
            with _accumulator(shape, on_disk=lazy) as acc:
                passes = _Passes(volume, reader, planes, group, channels, acc, runner, advance, should_stop, check)
                passes.run(ortho, lazy, np.dtype(image.dtype).itemsize)
                third = np.float32(1.0 / 3.0)
                for z, index in enumerate(planes):
                    _write(result, reader, index, channels, acc[:, z] * third, plan.output_dtype)
    return result


class _Passes:
    """The three passes of one channel group of one volume, summed into ``acc`` (C x Z x Y x X, float32)."""

    def __init__(self, volume, reader, planes, group, channels, acc, runner, advance, should_stop, check):

        self.volume, self.reader, self.planes, self.group, self.channels = volume, reader, planes, group, channels
        self.acc, self.runner, self.advance, self.should_stop, self.check = acc, runner, advance, should_stop, check
        self.transform = network_input(group)

    def _sink(self, target_of, *, assign: bool = False):
        group = self.group

        def sink(start: int, stop: int, rows: np.ndarray) -> None:
            if group.replicate:
                rows = rows.mean(axis=0, keepdims=True)
            values = group.scale.denormalize(rows)
            if assign:
                target_of(start, stop)[...] = values
            else:
                target_of(start, stop)[...] += values

        return sink

    def _denoise(self, plane: np.ndarray, tiles: TilePlan, sink) -> None:
        self.check()
        self.runner(plane, tiles, transform=self.transform, sink=sink, on_tiles=self.advance, cancel=self.should_stop)

    def run(self, ortho: OrthoPlan, lazy: bool, itemsize: int) -> None:

        acc, count = self.acc, len(self.group.channels)
        for z, index in enumerate(self.planes):  # XY planes (Y x X), one per z
            plane = self.reader(index)[self.channels]
            check_finite(plane, f"at plane {index}")
            self._denoise(plane, ortho.tiles["xy"], self._sink(lambda a, b, z=z: acc[:, z, a:b, :], assign=True))
        for rows in _slabs(ortho.height, count * ortho.depth * ortho.width * itemsize, lazy):  # XZ, one per y
            slab = self.volume.read(self.channels, rows=rows)
            check_finite(slab, f"in rows {rows.start}-{rows.stop - 1}")
            for j, y in enumerate(range(rows.start, rows.stop)):
                self._denoise(slab[:, :, j, :], ortho.tiles["xz"], self._sink(lambda a, b, y=y: acc[:, a:b, y, :]))
        for cols in _slabs(ortho.width, count * ortho.depth * ortho.height * itemsize, lazy):  # YZ, one per x
            slab = self.volume.read(self.channels, cols=cols)
            check_finite(slab, f"in columns {cols.start}-{cols.stop - 1}")
            for j, x in enumerate(range(cols.start, cols.stop)):
                self._denoise(slab[:, :, :, j], ortho.tiles["yz"], self._sink(lambda a, b, x=x: acc[:, a:b, :, x]))


def _write(result, reader, plane_index, channels: slice, values_cyx: np.ndarray, dtype) -> None:
    """Store ``C x Y x X`` values of some channels of one plane into ``result`` (cast to ``dtype``)."""
    values = to_dtype(np.asarray(values_cyx, dtype=np.float32), dtype)
    if isinstance(result, np.ndarray):
        reader.view(result, plane_index)[channels] = values
        return
    key = list(reader.index(plane_index))
    if reader.layout.channel is not None:
        key[reader.layout.channel] = channels
    result[tuple(key)] = reader.to_original(values)
