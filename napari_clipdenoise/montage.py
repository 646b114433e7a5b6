"""Many same-sized images in one array: a grid of cells, each with a name strip above it.

The comparison shows a dozen results side by side. As a dozen napari layers
that costs a dozen layer builds on the GUI thread and, for the rest of the
session, about 13,000 more objects for every full garbage collection to walk
(measured: a 12-layer comparison made each full collection 2.5x longer). As one
montage it is one layer. :func:`compose_montage` lays the images out row by row
with a strip above each cell for its name and a gap between cells; a small image
is enlarged by a whole factor (nearest neighbour, so every original pixel stays
exact) so its name strip is tall enough to read; a montage that would be wider
or taller than a display texture can be shows every ``shrink``-th pixel instead. Drawing the names into the
strips needs a font renderer, which the GUI side supplies (see
``napari_clipdenoise.widgets._cell_names``). No Qt, no napari here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A cell narrower than this (pixels) is enlarged by a whole factor until it is at least this wide.
MIN_CELL_WIDTH = 384
#: Name strip height and gap between cells, as fractions of the (enlarged) cell width.
STRIP_FRACTION = 0.13
GAP_FRACTION = 0.02
#: Smallest name strip (pixels).
MIN_STRIP = 24
#: Longest montage side (pixels): OpenGL's usual largest texture. A larger montage shows every
#: ``shrink``-th pixel of each image (napari would have to reduce it for display anyway).
MAX_EDGE = 16384


@dataclass(frozen=True)
class MontageCell:
    """One cell: its name, grid position, and where its image lies in the montage (pixels)."""

    name: str
    row: int
    column: int
    top: int  # first row of the image (below its name strip)
    left: int
    height: int
    width: int
    strip_top: int  # first row of its name strip

    def image_slice(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def strip_slice(self) -> tuple[slice, slice]:
        return slice(self.strip_top, self.top), slice(self.left, self.left + self.width)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "row": self.row,
            "column": self.column,
            "box": [self.top, self.left, self.height, self.width],
            "strip_top": self.strip_top,
        }


@dataclass
class Montage:
    """The montage image, its cells, and the whole factor each image was enlarged (or shrunk) by."""

    image: np.ndarray
    cells: list[MontageCell]
    zoom: int
    shape: tuple[int, int]
    background: float
    shrink: int = 1  # > 1: each cell shows every shrink-th pixel of its image (zoom is then 1)

    def cell_at(self, row: float, column: float) -> MontageCell | None:
        """The cell whose image contains montage pixel ``(row, column)``, if any."""
        for cell in self.cells:
            if cell.top <= row < cell.top + cell.height and cell.left <= column < cell.left + cell.width:
                return cell
        return None

    def original(self, cell: MontageCell) -> np.ndarray:
        """The cell's image at its original size (every ``zoom``-th pixel: the exact original values).

        Only for a montage that was not shrunk (``shrink == 1``); otherwise use the images themselves.
        """
        if self.shrink > 1:
            raise ValueError(f"this montage shows every {self.shrink}th pixel; its cells are not the original images")
        rows, columns = cell.image_slice()
        return self.image[rows, columns][:: self.zoom, :: self.zoom]


def montage_geometry(height: int, width: int) -> tuple[int, int, int]:
    """``(zoom, strip, gap)`` in montage pixels for cells of ``height`` x ``width`` pixels."""
    if height < 1 or width < 1:
        raise ValueError(f"montage cells need at least one pixel, got {height} x {width}")
    zoom = max(1, math.ceil(MIN_CELL_WIDTH / width))
    cell_width, cell_height = width * zoom, height * zoom
    # a fraction of the width, but never taller than half the image (a wide, flat image keeps a thin strip)
    strip = max(MIN_STRIP, min(round(cell_width * STRIP_FRACTION), cell_height // 2))
    gap = max(2, round(cell_width * GAP_FRACTION))
    return zoom, strip, gap


def compose_montage(
    images: Sequence[np.ndarray],
    names: Sequence[str],
    shape: tuple[int, int],
    *,
    background: float = 0.0,
    dtype=np.float32,
    max_edge: int = MAX_EDGE,
) -> Montage:
    """Lay ``images`` (all of one shape: ``(H, W)`` or ``(H, W, 3)``) out row by row in a ``shape`` grid.

    Strips and gaps are filled with ``background``. Cells left over at the end
    of the grid stay empty. A montage longer than ``max_edge`` on a side shows
    every ``shrink``-th pixel of each image, the smallest whole factor that fits.
    """
    if len(images) != len(names):
        raise ValueError(f"{len(images)} images but {len(names)} names")
    if not images:
        raise ValueError("a montage needs at least one image")
    rows, columns = (int(v) for v in shape)
    if rows * columns < len(images):
        raise ValueError(f"{len(images)} images do not fit a {rows} x {columns} grid")
    first = np.shape(images[0])
    for image in images:
        if np.shape(image) != first:
            raise ValueError(f"montage images must share one shape, got {first} and {np.shape(image)}")
    if len(first) not in (2, 3) or (len(first) == 3 and first[2] != 3):
        raise ValueError(f"montage images must be (H, W) or (H, W, 3), got {first}")
    height, width = first[:2]
    shrink = 1
    while True:
        shown_height, shown_width = -(-height // shrink), -(-width // shrink)
        zoom, strip, gap = montage_geometry(shown_height, shown_width)
        cell_height, cell_width = shown_height * zoom, shown_width * zoom
        pitch_y, pitch_x = strip + cell_height + gap, cell_width + gap
        if max(rows * pitch_y - gap, columns * pitch_x - gap) <= max_edge or zoom > 1:
            break
        shrink += 1
    out_shape = (rows * pitch_y - gap, columns * pitch_x - gap, *first[2:])
    image = np.full(out_shape, background, dtype=dtype)
    cells = []
    for index, (data, name) in enumerate(zip(images, names, strict=True)):
        row, column = divmod(index, columns)
        cell = MontageCell(
            name=str(name),
            row=row,
            column=column,
            top=row * pitch_y + strip,
            left=column * pitch_x,
            height=cell_height,
            width=cell_width,
            strip_top=row * pitch_y,
        )
        values = np.asarray(data, dtype=dtype)
        if shrink > 1:
            values = values[::shrink, ::shrink]
        if zoom > 1:
            values = np.repeat(np.repeat(values, zoom, axis=0), zoom, axis=1)
        image[cell.image_slice()] = values
        cells.append(cell)
    return Montage(
        image=image, cells=cells, zoom=zoom, shape=(rows, columns), background=float(background), shrink=shrink
    )
