"""Masked-pixel inputs (Noise2Void family): which pixels are hidden, what replaces them, where the loss is.

A :class:`MaskPlan` is drawn from the crop geometry and a random generator only,
never from pixel values. It names

- the *centres*: pixels whose noisy value the network must predict (one per
  cell of a stratified grid, as Noise2Void samples them);
- the *hidden* pixels: the centres and, with a structured mask, the line of
  pixels around each centre along the axis of correlated noise;
- for every hidden pixel, the *source* whose value replaces it: a random
  neighbour for a centre, a random pixel of the crop for a line pixel, and in
  both cases a pixel that is not hidden itself.

Because every replacement value comes from a pixel that is not hidden, the
masked input holds no hidden pixel's value anywhere. The network sees only the
masked input, through every path: the 1-channel ``first`` convolution, the
encoder (f1..f4) and the decoder's raw-image skip f0 all start from it, so the
prediction at a centre cannot depend on that centre's noisy value (the tests
check this by changing the hidden values and comparing outputs).

All channels of a pixel are hidden together and take their values from the
same source pixel: a grayscale image repeated for an RGB model, or noise
correlated across channels, leaks nothing through the other channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Tries at drawing a visible neighbour before falling back to any visible pixel of the crop.
NEIGHBOUR_TRIES = 16


@dataclass(frozen=True)
class MaskPlan:
    """Hidden pixels of a batch of ``n`` crops of ``height x width`` and where their values come from.

    Index arrays are flat: ``crop``, ``y``, ``x`` of each hidden pixel and
    ``source_y``, ``source_x`` (same crop) of its replacement. ``centre`` marks
    which hidden pixels carry the loss.
    """

    shape: tuple[int, int, int]  # n, height, width
    crop: np.ndarray
    y: np.ndarray
    x: np.ndarray
    source_y: np.ndarray
    source_x: np.ndarray
    centre: np.ndarray  # bool, one per hidden pixel

    @property
    def centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(crop, y, x)`` index arrays of the pixels the loss is taken at."""
        keep = self.centre
        return self.crop[keep], self.y[keep], self.x[keep]

    def hidden_map(self) -> np.ndarray:
        """``n x height x width`` booleans: True where the input value is replaced."""
        hidden = np.zeros(self.shape, bool)
        hidden[self.crop, self.y, self.x] = True
        return hidden

    def centre_map(self) -> np.ndarray:
        """``n x height x width`` booleans: True at the loss pixels."""
        centres = np.zeros(self.shape, bool)
        centres[self.centres] = True
        return centres

    def apply(self, crops):
        """The masked copy of ``crops`` (``n x C x height x width``, numpy or torch); ``crops`` is not changed."""
        if tuple(crops.shape[:1]) + tuple(crops.shape[2:]) != self.shape:
            raise ValueError(f"crops of shape {tuple(crops.shape)} do not fit a mask plan for {self.shape} (n, h, w)")
        masked = crops.clone() if hasattr(crops, "clone") else crops.copy()
        crop, y, x, sy, sx = self.crop, self.y, self.x, self.source_y, self.source_x
        if hasattr(crops, "clone"):  # torch: index tensors on the crops' device
            import torch

            crop, y, x, sy, sx = (torch.as_tensor(a, device=crops.device) for a in (crop, y, x, sy, sx))
            masked[crop, :, y, x] = crops[crop, :, sy, sx]
        else:
            masked[crop, :, y, x] = crops[crop, :, sy, sx]
        return masked


def cell_size(fraction: float) -> int:
    """Edge of the stratified grid's cells: one centre per ``cell x cell`` pixels."""
    return max(2, int(round(1.0 / np.sqrt(fraction))))


def draw_mask(
    n: int,
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    fraction: float,
    neighbourhood: int = 5,
    structured_axis: str | None = None,
    structured_length: int = 5,
) -> MaskPlan:
    """Draw the hidden pixels of ``n`` crops and their replacements (see the module docstring).

    Parameters
    ----------
    n, height, width : int
        Batch geometry.
    rng : numpy.random.Generator
        The only source of randomness (pixel values are never looked at).
    fraction : float
        Fraction of pixels that are centres (one per grid cell of ``cell_size(fraction)``).
    neighbourhood : int
        Odd window edge for a centre's replacement neighbour.
    structured_axis : {"X", "Y"} or None
        Also hide ``structured_length`` pixels along this axis around each centre.
    structured_length : int
        Odd length of that line (centre included).

    Returns
    -------
    MaskPlan
    """
    cell = cell_size(fraction)
    tops = np.arange(0, height, cell)
    lefts = np.arange(0, width, cell)
    grid_y, grid_x = np.meshgrid(tops, lefts, indexing="ij")
    grid_y, grid_x = grid_y.ravel(), grid_x.ravel()
    per_crop = grid_y.size
    crop = np.repeat(np.arange(n), per_crop)
    span_y = np.minimum(cell, height - grid_y)
    span_x = np.minimum(cell, width - grid_x)
    cy = np.tile(grid_y, n) + (rng.random(n * per_crop) * np.tile(span_y, n)).astype(np.int64)
    cx = np.tile(grid_x, n) + (rng.random(n * per_crop) * np.tile(span_x, n)).astype(np.int64)

    hidden = np.zeros((n, height, width), bool)
    hidden[crop, cy, cx] = True
    line_crop, line_y, line_x = _line_pixels(crop, cy, cx, height, width, structured_axis, structured_length)
    hidden[line_crop, line_y, line_x] = True
    # a line pixel may coincide with another centre: keep each hidden pixel once, centres first
    line_only = ~_is_centre(line_crop, line_y, line_x, crop, cy, cx, (n, height, width))
    line_crop, line_y, line_x = line_crop[line_only], line_y[line_only], line_x[line_only]
    line_key = np.unique(np.ravel_multi_index((line_crop, line_y, line_x), (n, height, width)))
    line_crop, line_y, line_x = np.unravel_index(line_key, (n, height, width))

    sy, sx = _visible_neighbours(crop, cy, cx, hidden, neighbourhood, rng)
    ly, lx = _visible_anywhere(line_crop, hidden, rng)
    return MaskPlan(
        (n, height, width),
        np.concatenate([crop, line_crop]).astype(np.int64),
        np.concatenate([cy, line_y]).astype(np.int64),
        np.concatenate([cx, line_x]).astype(np.int64),
        np.concatenate([sy, ly]).astype(np.int64),
        np.concatenate([sx, lx]).astype(np.int64),
        np.concatenate([np.ones(crop.size, bool), np.zeros(line_crop.size, bool)]),
    )


def _line_pixels(crop, cy, cx, height, width, axis, length):
    if axis is None:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    half = length // 2
    offsets = np.array([d for d in range(-half, half + 1) if d != 0])
    crop = np.repeat(crop, offsets.size)
    ys, xs = np.repeat(cy, offsets.size), np.repeat(cx, offsets.size)
    shifts = np.tile(offsets, cy.size)
    if axis == "X":
        xs = xs + shifts
    else:
        ys = ys + shifts
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    return crop[inside], ys[inside], xs[inside]


def _is_centre(crop, y, x, ccrop, cy, cx, shape) -> np.ndarray:
    centres = np.zeros(shape, bool)
    centres[ccrop, cy, cx] = True
    return centres[crop, y, x]


def _visible_neighbours(crop, cy, cx, hidden, neighbourhood, rng):
    """For each centre, a random pixel of its window that is not hidden (else any visible pixel of the crop)."""
    _, height, width = hidden.shape
    radius = neighbourhood // 2
    sy, sx = np.empty_like(cy), np.empty_like(cx)
    todo = np.arange(cy.size)
    for _ in range(NEIGHBOUR_TRIES):
        if todo.size == 0:
            break
        dy = rng.integers(-radius, radius + 1, todo.size)
        dx = rng.integers(-radius, radius + 1, todo.size)
        ny, nx = cy[todo] + dy, cx[todo] + dx
        ok = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width) & ((dy != 0) | (dx != 0))
        ok[ok] = ~hidden[crop[todo][ok], ny[ok], nx[ok]]
        sy[todo[ok]], sx[todo[ok]] = ny[ok], nx[ok]
        todo = todo[~ok]
    if todo.size:
        fy, fx = _visible_anywhere(crop[todo], hidden, rng)
        sy[todo], sx[todo] = fy, fx
    return sy, sx


def _visible_anywhere(crop, hidden, rng):
    """For each entry of ``crop``, a uniformly drawn pixel of that crop that is not hidden."""
    _, height, width = hidden.shape
    ys, xs = np.empty(crop.size, np.int64), np.empty(crop.size, np.int64)
    todo = np.arange(crop.size)
    while todo.size:  # at most a quarter of the pixels are hidden: a few rounds
        y = rng.integers(0, height, todo.size)
        x = rng.integers(0, width, todo.size)
        ok = ~hidden[crop[todo], y, x]
        ys[todo[ok]], xs[todo[ok]] = y[ok], x[ok]
        todo = todo[~ok]
    return ys, xs
