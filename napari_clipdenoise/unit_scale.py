"""Mapping layer values to the [0, 1] scale that noise levels and metrics refer to, and back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Float images whose values all lie in this interval are taken to be on the [0, 1] scale already.
FLOAT_UNIT_MARGIN = (-0.5, 1.5)


@dataclass(frozen=True)
class UnitScale:
    """Linear map of an image's values to [0, 1]: ``(value - low) / (high - low)``.

    ``for_image`` picks: uint8 -> [0, 255] (noise levels such as sigma 25 then mean
    what they mean for photographs); floats inside [-0.5, 1.5] -> [0, 1] (images
    on the [0, 1] scale, which overshoot it a little once noise is added); other
    images -> their own min and max.
    """

    low: float
    high: float

    @classmethod
    def for_image(cls, image) -> UnitScale:
        array = np.asarray(image)
        if array.dtype == np.uint8:
            return cls(0.0, 255.0)
        if array.size == 0:
            raise ValueError("image is empty; nothing to scale")
        low, high = float(np.min(array)), float(np.max(array))  # NaN propagates and is refused below
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("image contains NaN or infinite values; replace them first (e.g. np.nan_to_num)")
        if array.dtype.kind == "f" and low >= FLOAT_UNIT_MARGIN[0] and high <= FLOAT_UNIT_MARGIN[1]:
            return cls(0.0, 1.0)
        if high <= low:
            raise ValueError(f"image is constant (every value is {low:g}); there is nothing to compare")
        return cls(low, high)

    def to_unit(self, image) -> np.ndarray:
        return ((np.asarray(image, dtype=np.float32) - np.float32(self.low)) / np.float32(self.high - self.low)).astype(
            np.float32
        )

    def from_unit(self, image01, dtype=np.float32) -> np.ndarray:
        values = np.asarray(image01, dtype=np.float32) * np.float32(self.high - self.low) + np.float32(self.low)
        dtype = np.dtype(dtype)
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        return values.astype(dtype)
