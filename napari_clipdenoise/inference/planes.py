"""One plane at a time: reading ``C x Y x X`` planes of any array lazily, checking them, feeding the network.

Shared by the XY pipeline (``pipeline.py``) and the ortho passes (``ortho.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .axes import AxesLayout


def check_finite(values: np.ndarray, where: str) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(
            f"image contains {bad} NaN or infinite value(s) {where}; replace them first (e.g. np.nan_to_num)"
        )


class PlaneReader:
    """Reads one ``C x Y x X`` plane (C first, 1 when there is no channel axis) lazily."""

    def __init__(self, image, layout: AxesLayout):
        self.image = image
        self.layout = layout

    def index(self, plane_index: tuple[int, ...], rows=slice(None), cols=slice(None)) -> tuple:
        key: list = [slice(None)] * len(self.layout.axes)
        for axis, i in zip(self.layout.planes, plane_index, strict=True):
            key[axis] = i
        key[self.layout.y], key[self.layout.x] = rows, cols
        return tuple(key)

    def plane_size(self) -> tuple[int, int]:
        return int(self.image.shape[self.layout.y]), int(self.image.shape[self.layout.x])

    def kept_axes(self) -> list[int]:
        return [a for a in range(len(self.layout.axes)) if a not in self.layout.planes]

    def __call__(self, plane_index: tuple[int, ...], rows=slice(None), cols=slice(None)) -> np.ndarray:
        return self._to_cyx(np.asarray(self.image[self.index(plane_index, rows, cols)]))

    def view(self, array: np.ndarray, plane_index: tuple[int, ...]) -> np.ndarray:
        """A ``C x Y x X`` view of one plane of the numpy ``array`` (writes go into ``array``)."""
        return self._to_cyx(array[self.index(plane_index)])

    def _to_cyx(self, plane: np.ndarray) -> np.ndarray:
        kept = self.kept_axes()
        order = ([kept.index(self.layout.channel)] if self.layout.channel is not None else []) + [
            kept.index(self.layout.y),
            kept.index(self.layout.x),
        ]
        plane = np.transpose(plane, order)
        return plane if self.layout.channel is not None else plane[np.newaxis]

    def to_original(self, plane_cyx: np.ndarray) -> np.ndarray:
        """Inverse of the transpose in ``__call__``, for writing results back."""
        if self.layout.channel is None:
            plane_cyx = plane_cyx[0]
            present = [self.layout.y, self.layout.x]
        else:
            present = [self.layout.channel, self.layout.y, self.layout.x]
        kept = self.kept_axes()
        return np.transpose(plane_cyx, np.argsort([kept.index(a) for a in present]))


def network_input(group) -> Callable[[np.ndarray], np.ndarray]:
    """Per tile: raw values -> the network's [0, 1] scale (grayscale repeated for RGB models)."""

    def transform(tile: np.ndarray) -> np.ndarray:
        values = group.scale.normalize(tile)
        return np.broadcast_to(values, (3, *values.shape[1:])) if group.replicate else values

    return transform
