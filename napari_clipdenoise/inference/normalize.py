"""Global intensity normalisation: image values <-> the network's [0, 1] scale.

The range is estimated once per image (never per tile), from a bounded sample of
planes so lazy dask/zarr inputs are not read whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_PERCENTILES = (0.1, 99.9)
MAX_SAMPLE_PLANES = 16
MAX_SAMPLES_PER_PLANE = 1 << 20


@dataclass(frozen=True)
class IntensityRange:
    """Linear map ``value -> (value - low) / (high - low)`` and back."""

    low: float
    high: float
    rule: str = field(default="", compare=False)  # how it was chosen, for provenance ("model input scale (HU)"...)

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
    """Cast float results to ``dtype``; values beyond its range are clipped to the limit, never wrapped.

    Integers are rounded. 8- and 16-bit limits are exact in float32; wider ones
    are not (uint32's maximum rounds up to 2**32 in float32, and int64's in
    float64), so those are clipped in float64 and values at or past the maximum
    are set to it exactly. float16 results beyond its largest finite value become
    that value (:func:`clip_note` says when that happened).
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        if dtype.itemsize <= 2:
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        wide = np.rint(np.asarray(values, dtype=np.float64))
        top = float(info.max)
        below_top = np.nextafter(top, -np.inf) if top > info.max else top
        result = np.clip(wide, float(info.min), below_top).astype(dtype)
        result[wide >= top] = info.max
        return result
    if dtype.kind == "f" and dtype.itemsize < np.dtype(np.float32).itemsize:
        limit = float(np.finfo(dtype).max)
        return np.clip(values, -limit, limit).astype(dtype)
    return values.astype(dtype, copy=False)


def clip_note(values: np.ndarray, dtype: np.dtype) -> str | None:
    """A note when ``values`` do not fit ``dtype`` and :func:`to_dtype` clips them, else None."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or (dtype.kind == "f" and dtype.itemsize >= 4):
        return None
    info = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
    low, high = float(np.min(values)), float(np.max(values))
    if low < float(info.min) or high > float(info.max):
        return f"results outside the {dtype} range [{info.min}, {info.max}] were clipped to it"
    return None


def estimate_range(
    samples: Sequence[np.ndarray],
    dtype: np.dtype,
    *,
    mode: str | tuple[float, float] = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    units: str | None = None,
    model_scale=None,
) -> IntensityRange:
    """Pick the normalisation range for one channel group from sampled values.

    ``mode``:
    ``"auto"``
        data declared in the unit the model was trained in (``units`` equals
        ``model_scale.unit``, e.g. CT in HU with ``ldct``) use the model's own scale
        (``model_scale.low``, ``model_scale.high``); otherwise uint8 data use [0, 255]
        (the scale photographs were trained on); float data already inside [0, 1]
        use [0, 1]; anything else uses ``"percentile"``.
    ``"percentile"``
        robust ``percentiles`` (default 0.1, 99.9) of the sampled values.
    ``"dtype"``
        the integer dtype's full range (or [0, 1] for floats).
    ``(low, high)``
        fixed values, e.g. ``(-1024, 3072)`` for CT in HU with the ``ldct`` model.

    The returned range's ``rule`` says which of these applied (for provenance).
    """
    if isinstance(mode, (tuple, list)):
        low, high = (float(v) for v in mode)
        if not np.isfinite([low, high]).all() or high <= low:
            raise ValueError(f"intensity_range must be (low, high) with low < high, got {mode!r}")
        return IntensityRange(low, high, "given")
    dtype = np.dtype(dtype)
    if mode == "auto" and model_scale is not None and units is not None and units == model_scale.unit:
        return IntensityRange(float(model_scale.low), float(model_scale.high), f"model input scale ({units})")
    values = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in samples])
    if mode == "dtype":
        bounds = dtype_range(dtype)
        return IntensityRange(*(bounds or (0.0, 1.0)), f"{dtype} range" if bounds else "float [0, 1]")
    if mode == "auto":
        if dtype == np.uint8:
            return IntensityRange(0.0, 255.0, "uint8 range")
        if dtype.kind == "f" and values.min() >= 0.0 and values.max() <= 1.0 and values.max() > values.min():
            return IntensityRange(0.0, 1.0, "float data in [0, 1]")
    elif mode != "percentile":
        raise ValueError(f"intensity_range must be 'auto', 'percentile', 'dtype' or (low, high), got {mode!r}")
    low, high = np.percentile(values, percentiles)
    rule = f"percentiles {percentiles[0]:g}-{percentiles[1]:g} of sampled values"
    if not high > low:  # a few bright pixels on a flat background: fall back to min/max
        low, high = values.min(), values.max()
        rule = "min-max of sampled values"
    return IntensityRange(float(low), float(high), rule)


def sample_planes(read_plane, plane_indices: list[tuple[int, ...]], *, lazy: bool = False) -> list[np.ndarray]:
    """Read a bounded sample of up to MAX_SAMPLE_PLANES evenly spaced planes (about 1 Mpx each).

    ``read_plane(index, rows, cols)`` returns a ``C x h x w`` piece of one plane.
    In-memory planes are subsampled on a regular grid. Lazy ones (zarr, dask) are
    never read whole: a plane larger than about 1 Mpx contributes
    :data:`SAMPLE_WINDOWS` evenly spread windows of :data:`SAMPLE_WINDOW` pixels,
    so only the chunks under them are read, whatever the plane's size.
    """
    if len(plane_indices) > MAX_SAMPLE_PLANES:
        picks = np.linspace(0, len(plane_indices) - 1, MAX_SAMPLE_PLANES).round().astype(int)
        plane_indices = [plane_indices[i] for i in sorted(set(picks))]
    samples = []
    for index in plane_indices:
        if not lazy:
            plane = read_plane(index)
            step = max(1, int(np.ceil(np.sqrt(plane.shape[-1] * plane.shape[-2] / MAX_SAMPLES_PER_PLANE))))
            samples.append(plane[..., ::step, ::step])
            continue
        height, width = read_plane.plane_size()
        if height * width <= MAX_SAMPLES_PER_PLANE:
            samples.append(read_plane(index))
            continue
        per_axis = int(np.sqrt(SAMPLE_WINDOWS))
        for top in _window_starts(height, per_axis):
            for left in _window_starts(width, per_axis):
                rows, cols = slice(top, top + SAMPLE_WINDOW), slice(left, left + SAMPLE_WINDOW)
                samples.append(read_plane(index, rows, cols))
    return samples


#: Windows (a square number) and their edge in pixels, sampled per lazy plane.
SAMPLE_WINDOWS = 16
SAMPLE_WINDOW = 256


def _window_starts(length: int, count: int) -> list[int]:
    if length <= SAMPLE_WINDOW:
        return [0]
    return sorted({int(round(v)) for v in np.linspace(0, length - SAMPLE_WINDOW, count)})
