"""Global intensity normalisation: image values <-> the network's [0, 1] scale.

The range is estimated once per image (never per tile), from a bounded sample of
planes so lazy dask/zarr inputs are not read whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_PERCENTILES = (0.1, 99.9)
MAX_SAMPLE_PLANES = 16
MAX_SAMPLES_PER_PLANE = 1 << 20


@dataclass(frozen=True)
class IntensityRange:
    """Linear map ``value -> (value - low) / (high - low)`` and back."""

    low: float
    high: float

    @property
    def is_constant(self) -> bool:
        return not self.high > self.low

    def normalize(self, values: np.ndarray) -> np.ndarray:
        scale = np.float32(1.0 / (self.high - self.low))
        return (values.astype(np.float32, copy=False) - np.float32(self.low)) * scale

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        return values * np.float32(self.high - self.low) + np.float32(self.low)


def dtype_range(dtype: np.dtype) -> tuple[float, float] | None:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return None


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float32 results to ``dtype``: integers are rounded and clipped to the dtype's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        low, high = dtype_range(dtype)
        return np.clip(np.rint(values), low, high).astype(dtype)
    return values.astype(dtype, copy=False)


def estimate_range(
    samples: Sequence[np.ndarray],
    dtype: np.dtype,
    *,
    mode: str | tuple[float, float] = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> IntensityRange:
    """Pick the normalisation range for one channel group from sampled values.

    ``mode``:
    ``"auto"``
        uint8 data use [0, 255] (the scale photographs were trained on); float data
        already inside [0, 1] use [0, 1]; anything else uses ``"percentile"``.
    ``"percentile"``
        robust ``percentiles`` (default 0.1, 99.9) of the sampled values.
    ``"dtype"``
        the integer dtype's full range (or [0, 1] for floats).
    ``(low, high)``
        fixed values, e.g. ``(-1024, 3072)`` for CT in HU with the ``ldct`` model.
    """
    if isinstance(mode, (tuple, list)):
        low, high = (float(v) for v in mode)
        if not np.isfinite([low, high]).all() or high <= low:
            raise ValueError(f"intensity_range must be (low, high) with low < high, got {mode!r}")
        return IntensityRange(low, high)
    values = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in samples])
    dtype = np.dtype(dtype)
    if mode == "dtype":
        bounds = dtype_range(dtype) or (0.0, 1.0)
        return IntensityRange(*bounds)
    if mode == "auto":
        if dtype == np.uint8:
            return IntensityRange(0.0, 255.0)
        if dtype.kind == "f" and values.min() >= 0.0 and values.max() <= 1.0 and values.max() > values.min():
            return IntensityRange(0.0, 1.0)
    elif mode != "percentile":
        raise ValueError(f"intensity_range must be 'auto', 'percentile', 'dtype' or (low, high), got {mode!r}")
    low, high = np.percentile(values, percentiles)
    if not high > low:  # a few bright pixels on a flat background: fall back to min/max
        low, high = values.min(), values.max()
    return IntensityRange(float(low), float(high))


def sample_planes(
    read_plane: Callable[[tuple[int, ...]], np.ndarray], plane_indices: list[tuple[int, ...]]
) -> list[np.ndarray]:
    """Read up to MAX_SAMPLE_PLANES evenly spaced planes, each subsampled to about 1 Mpx."""
    if len(plane_indices) > MAX_SAMPLE_PLANES:
        picks = np.linspace(0, len(plane_indices) - 1, MAX_SAMPLE_PLANES).round().astype(int)
        plane_indices = [plane_indices[i] for i in sorted(set(picks))]
    samples = []
    for index in plane_indices:
        plane = read_plane(index)
        step = max(1, int(np.ceil(np.sqrt(plane.shape[-1] * plane.shape[-2] / MAX_SAMPLES_PER_PLANE))))
        samples.append(plane[..., ::step, ::step])
    return samples
