"""Image quality metrics: PSNR and SSIM as the paper's evaluation defines them, and the CT variants.

- :func:`psnr`, :func:`ssim`: general functions with an explicit ``data_range``.
- :func:`reference_psnr`, :func:`reference_ssim`: the paper's synthetic-noise metrics (clean*255 vs
  output*255, float64, no rounding); :func:`real_noise_metrics`: the real-noise variant (output
  rounded to uint8 first).
- :func:`denormalize_ct`, :func:`ct_psnr`, :func:`ct_ssim`: the low-dose CT metrics in HU.

Only numpy and scipy are imported.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import ndimage

__all__ = [
    "CT_DATA_RANGE",
    "CT_MAX_HU",
    "CT_MIN_HU",
    "REFERENCE_CT_MAX_HU",
    "ct_psnr",
    "ct_ssim",
    "denormalize_ct",
    "gaussian_window",
    "psnr",
    "real_noise_metrics",
    "reference_psnr",
    "reference_ssim",
    "ssim",
]

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
CT_MIN_HU = -1024.0
CT_MAX_HU = 3072.0
CT_DATA_RANGE = 4096.0
# The reference CT evaluation de-normalizes with max 3096 (a typo for 3072). Pass
# ``max_hu=REFERENCE_CT_MAX_HU`` to denormalize_ct to reproduce its numbers.
REFERENCE_CT_MAX_HU = 3096.0


# --------------------------------------------------------------------------- helpers


def _pair(reference, test, names=("reference", "test")) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(reference)
    b = np.asarray(test)
    for name, arr in zip(names, (a, b), strict=True):
        if arr.dtype.kind not in "uifb":
            raise ValueError(f"{name} must be a real-valued numeric array; got dtype {arr.dtype}")
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got {a.shape} and {b.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    for name, arr in zip(names, (a, b), strict=True):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return a, b


def _check_data_range(data_range) -> float:
    if isinstance(data_range, (bool, np.bool_)) or not isinstance(data_range, numbers.Real):
        raise TypeError(f"data_range must be a positive number; got {data_range!r}")
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a positive finite number; got {data_range!r}")
    return value


def _psnr_from(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(20.0 * np.log10(data_range / np.sqrt(mse)))


def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """1D Gaussian weights ``exp(-(i - c)^2 / (2 sigma^2))``, normalized to sum 1 (float64, shape (size,)).

    The 2D SSIM window is the outer product of this with itself (what MATLAB's
    ``fspecial('gaussian', 11, 1.5)`` and OpenCV's ``getGaussianKernel`` give).
    """
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def _filter2d(image: np.ndarray, window: np.ndarray, *, mode: str) -> np.ndarray:
    """Separable Gaussian filtering of a 2D float64 array; ``mode`` "valid" or "same" (zero padding)."""
    if mode == "valid":
        out = ndimage.correlate1d(image, window, axis=0, mode="constant", cval=0.0)
        out = ndimage.correlate1d(out, window, axis=1, mode="constant", cval=0.0)
        r = len(window) // 2
        return out[r:-r, r:-r]
    out = ndimage.correlate1d(image, window, axis=0, mode="constant", cval=0.0)
    return ndimage.correlate1d(out, window, axis=1, mode="constant", cval=0.0)


def _ssim_map(a: np.ndarray, b: np.ndarray, c1: float, c2: float, *, mode: str) -> np.ndarray:
    window = gaussian_window()
    mu1 = _filter2d(a, window, mode=mode)
    mu2 = _filter2d(b, window, mode=mode)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _filter2d(a * a, window, mode=mode) - mu1_sq
    sigma2_sq = _filter2d(b * b, window, mode=mode) - mu2_sq
    sigma12 = _filter2d(a * b, window, mode=mode) - mu1_mu2
    return ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))


def _channels_last(a: np.ndarray, channel_axis, name: str = "reference") -> np.ndarray:
    """Return an (H, W, C) view; a 2D input gets C = 1."""
    if channel_axis is None:
        if a.ndim != 2:
            raise ValueError(
                f"{name} must be 2D (H, W) when channel_axis is None; got shape {a.shape} "
                "(pass channel_axis=-1 for an (H, W, C) colour image)"
            )
        return a[:, :, None]
    if isinstance(channel_axis, (bool, np.bool_)) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be None or an integer axis; got {channel_axis!r}")
    if a.ndim != 3 or not -3 <= channel_axis < 3:
        raise ValueError(
            f"with channel_axis={channel_axis} the images must be 3D (2 spatial axes + channels); got shape {a.shape}"
        )
    return np.moveaxis(a, channel_axis, -1)


# --------------------------------------------------------------------------- general metrics


def psnr(reference, test, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``20*log10(data_range / sqrt(MSE))`` in dB.

    The MSE is taken over all pixels and channels, in float64.

    Parameters
    ----------
    reference, test : ndarray, same shape, any real dtype
    data_range : float, default 1.0
        Peak value (1.0 for [0, 1] images, 255 for the 0-255 scale).

    Returns
    -------
    float
        ``inf`` for identical arrays.
    """
    data_range = _check_data_range(data_range)
    a, b = _pair(reference, test)
    return _psnr_from(a, b, data_range)


def ssim(reference, test, *, data_range: float = 1.0, channel_axis=None) -> float:
    """MATLAB-style structural similarity, as in the paper's evaluation.

    Each channel is filtered with an 11x11 normalized Gaussian window (sigma 1.5); only the "valid"
    interior is kept (5 px cut on each side); with ``C1 = (0.01*L)^2``, ``C2 = (0.03*L)^2``,
    ``sigma^2 = E[x^2] - mu^2`` and ``sigma12 = E[xy] - mu1*mu2``, the SSIM map is averaged, then
    the channel means are averaged. With ``data_range=255`` on images scaled to 0-255 this is the
    reference's definition (see :func:`reference_ssim`).

    Parameters
    ----------
    reference, test : ndarray, same shape: (H, W), or 3D with a channel axis; H, W >= 11
    data_range : float, default 1.0
        The ``L`` of the constants.
    channel_axis : int, optional
        Axis of colour channels (e.g. -1 for (H, W, 3)). Required for 3D inputs.

    Returns
    -------
    float
        1.0 for identical images.
    """
    data_range = _check_data_range(data_range)
    a, b = _pair(reference, test)
    a3 = _channels_last(a, channel_axis)
    b3 = _channels_last(b, channel_axis, "test")
    if min(a3.shape[:2]) < SSIM_WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} pixels; "
            f"got spatial shape {a3.shape[:2]}"
        )
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    values = [float(_ssim_map(a3[:, :, c], b3[:, :, c], c1, c2, mode="valid").mean()) for c in range(a3.shape[2])]
    return float(np.mean(values))


# --------------------------------------------------------------------------- paper protocol


def _to_255(image, name: str) -> np.ndarray:
    """``image * 255`` computed in the image's own float dtype, then float64.

    As the reference does: its float32 arrays are multiplied by 255.0 in float32
    before the metrics cast to float64.
    """
    array = np.asarray(image)
    if array.dtype.kind not in "f":
        raise ValueError(f"{name} must be a float image on the [0, 1] scale; got dtype {array.dtype}")
    if array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    return (array * array.dtype.type(255.0)).astype(np.float64)


def _reference_channel_axis(array: np.ndarray):
    return -1 if array.ndim == 3 else None


def reference_psnr(clean01, output01) -> float:
    """The paper's PSNR: ``clean*255`` vs ``output*255`` in float64, no rounding, data range 255.

    The products are formed in the inputs' dtype (float32 for the reference's images), then cast
    to float64, exactly as the reference evaluation does.

    Parameters
    ----------
    clean01, output01 : ndarray, float, same shape (H, W, 3) or (H, W), values on the [0, 1] scale
        ``output01`` is used as given (the reference clamps the network output to [0, 1] before).
    """
    a = _to_255(clean01, "clean01")
    b = _to_255(output01, "output01")
    return psnr(a, b, data_range=255.0)


def reference_ssim(clean01, output01) -> float:
    """The paper's SSIM (MATLAB style, per channel then averaged) on ``clean*255`` vs ``output*255``.

    Parameters
    ----------
    clean01, output01 : ndarray, float, same shape (H, W, 3) or (H, W), values on the [0, 1] scale
    """
    a = _to_255(clean01, "clean01")
    b = _to_255(output01, "output01")
    return ssim(a, b, data_range=255.0, channel_axis=_reference_channel_axis(a))


def real_noise_metrics(clean_uint8, output01) -> tuple[float, float]:
    """PSNR and SSIM of the real-noise protocol: the output is rounded to 8 bits first.

    Parameters
    ----------
    clean_uint8 : ndarray, uint8, shape (H, W, 3) or (H, W)
    output01 : ndarray, float, same shape, [0, 1] scale; clipped to [0, 1], then ``round(x*255)``
        (in the output's dtype, round half to even) to uint8.

    Returns
    -------
    (psnr, ssim) : tuple of float
        On the 0-255 scale (data range 255).
    """
    clean = np.asarray(clean_uint8)
    if clean.dtype != np.uint8:
        raise ValueError(f"clean_uint8 must be a uint8 image; got dtype {clean.dtype}")
    out = np.asarray(output01)
    if out.dtype.kind not in "f":
        raise ValueError(f"output01 must be a float image on the [0, 1] scale; got dtype {out.dtype}")
    if not np.isfinite(out).all():
        raise ValueError("output01 contains NaN or infinite values")
    if out.dtype.itemsize < 4:
        out = out.astype(np.float32)
    # as the reference: clamp, scale by 255 in the output's dtype (float32 there), round half to even
    out8 = np.round(np.clip(out, 0, 1) * out.dtype.type(255.0)).astype(np.uint8)
    channel_axis = _reference_channel_axis(clean)
    return (
        psnr(clean, out8, data_range=255.0),
        ssim(clean, out8, data_range=255.0, channel_axis=channel_axis),
    )


# --------------------------------------------------------------------------- CT


def denormalize_ct(v, *, min_hu: float = CT_MIN_HU, max_hu: float = CT_MAX_HU) -> np.ndarray:
    """Map normalized CT values back to Hounsfield units: ``v * (max_hu - min_hu) + min_hu``.

    The training data are normalized as ``(HU + 1024) / 4096``, so the defaults invert that exactly.
    The reference evaluation uses ``max_hu=3096`` (a typo for 3072; :data:`REFERENCE_CT_MAX_HU`):
    pass it explicitly to reproduce the reference's CT numbers.

    Parameters
    ----------
    v : ndarray, any real dtype
    min_hu, max_hu : float

    Returns
    -------
    ndarray, float64, same shape as ``v``.
    """
    if not (np.isfinite(min_hu) and np.isfinite(max_hu) and max_hu > min_hu):
        raise ValueError(f"need finite min_hu < max_hu; got min_hu={min_hu!r}, max_hu={max_hu!r}")
    array = np.asarray(v)
    if array.dtype.kind not in "uif":
        raise ValueError(f"v must be a real-valued numeric array; got dtype {array.dtype}")
    return array.astype(np.float64) * (float(max_hu) - float(min_hu)) + float(min_hu)


def _ct_pair(target_hu, output_hu) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(target_hu, output_hu, names=("target_hu", "output_hu"))
    return np.clip(a, CT_MIN_HU, CT_MAX_HU), np.clip(b, CT_MIN_HU, CT_MAX_HU)


def ct_psnr(target_hu, output_hu) -> float:
    """PSNR of CT images in HU, both truncated to [-1024, 3072], data range 4096.

    Parameters
    ----------
    target_hu, output_hu : ndarray, same shape, Hounsfield units
    """
    a, b = _ct_pair(target_hu, output_hu)
    return _psnr_from(a, b, CT_DATA_RANGE)


def ct_ssim(target_hu, output_hu) -> float:
    """SSIM of CT slices in HU as the reference's CT evaluation computes it.

    Both slices are truncated to [-1024, 3072]; an 11x11 Gaussian window (sigma 1.5) is applied as
    zero-padded "same" filtering (the map keeps the full image size, borders included), with
    ``C1 = (0.01*4096)^2`` and ``C2 = (0.03*4096)^2``; the map is averaged.

    Parameters
    ----------
    target_hu, output_hu : ndarray, shape (H, W), Hounsfield units

    Returns
    -------
    float
    """
    a, b = _ct_pair(target_hu, output_hu)
    if a.ndim != 2:
        raise ValueError(f"ct_ssim takes single 2D slices (H, W); got shape {a.shape}")
    c1 = (0.01 * CT_DATA_RANGE) ** 2
    c2 = (0.03 * CT_DATA_RANGE) ** 2
    return float(_ssim_map(a, b, c1, c2, mode="same").mean())
