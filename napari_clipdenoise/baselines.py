"""Classical denoisers from scikit-image (and BM3D when installed), as comparison baselines.

Every method takes a float image on the [0, 1] scale and the noise standard deviation on that
scale (estimated from the image when not given), so the methods are compared at equal knowledge.
Only numpy/scipy/scikit-image are imported here; BM3D is optional (non-commercial licence).
"""

from __future__ import annotations

import numbers

import numpy as np

from .noise import estimate_noise_sigma

__all__ = ["BM3D_INSTALL_HINT", "CLASSICAL_METHODS", "available_methods", "bm3d_available", "classical_denoise"]

# Parameter choices (documented, fixed; sigma is the noise std on the [0, 1] scale):
NL_MEANS_H_FACTOR = 0.8  # h = 0.8 * sigma, fast mode (scikit-image's recommended setting)
NL_MEANS_PATCH_SIZE = 5
NL_MEANS_PATCH_DISTANCE = 6
TV_WEIGHT_FACTOR = 1.0  # Chambolle weight = 1.0 * sigma
TV_MAX_ITERATIONS = 200
WAVELET = "db2"  # Daubechies-2: better than the default Haar on natural images at sigma 15-50

BM3D_INSTALL_HINT = (
    "BM3D is an optional baseline: pip install bm3d "
    "(note: the bm3d package is free for non-commercial use only; check its licence)"
)


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package can be imported."""
    try:
        import bm3d  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to import means unavailable, not a crash here
        return False
    return True


CLASSICAL_METHODS: dict[str, str] = {
    "nl_means": (
        f"non-local means (scikit-image, fast mode; h = {NL_MEANS_H_FACTOR} sigma, "
        f"patch {NL_MEANS_PATCH_SIZE}, distance {NL_MEANS_PATCH_DISTANCE})"
    ),
    "tv": f"total variation, Chambolle (scikit-image; weight = {TV_WEIGHT_FACTOR} sigma)",
    "wavelet": f"wavelet shrinkage (scikit-image; {WAVELET}, BayesShrink, soft, rescale_sigma)",
}
if bm3d_available():
    CLASSICAL_METHODS["bm3d"] = "BM3D (optional bm3d package, non-commercial licence)"

_KNOWN_METHODS = ("nl_means", "tv", "wavelet", "bm3d")


def available_methods() -> list[str]:
    """Names of the classical methods usable in this environment (keys of :data:`CLASSICAL_METHODS`)."""
    return list(CLASSICAL_METHODS)


def _check_image(image, channel_axis) -> tuple[np.ndarray, int | None]:
    array = np.asarray(image)
    if array.dtype.kind not in "f":
        raise ValueError(
            f"image must be a floating-point array on the [0, 1] scale; got dtype {array.dtype} "
            "(convert with skimage.util.img_as_float)"
        )
    if channel_axis is not None:
        if isinstance(channel_axis, (bool, np.bool_)) or not isinstance(channel_axis, numbers.Integral):
            raise TypeError(f"channel_axis must be None or an integer axis; got {channel_axis!r}")
        if array.ndim != 3 or not -3 <= channel_axis < 3:
            raise ValueError(f"channel_axis={channel_axis} needs a 3D (H, W, C) image; got shape {array.shape}")
        channel_axis = int(channel_axis) % 3
    elif array.ndim not in (2, 3):
        raise ValueError(f"image must be 2D (H, W) or 3D; got shape {array.shape}")
    if min(array.shape) < 2:
        raise ValueError(f"image is too small to denoise: shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values")
    return array, channel_axis


def _check_sigma(sigma) -> float:
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma must be None or a number (noise std on the [0, 1] scale); got {sigma!r}")
    value = float(sigma)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"sigma must be a finite number >= 0 (noise std on the [0, 1] scale); got {sigma!r}")
    return value


def _bm3d(image: np.ndarray, sigma: float, channel_axis: int | None) -> np.ndarray:
    try:
        import bm3d
    except Exception as exc:
        raise ImportError(BM3D_INSTALL_HINT) from exc
    if channel_axis is None:
        if image.ndim != 2:
            raise ValueError(f"bm3d handles 2D images or (H, W, 3) with channel_axis; got shape {image.shape}")
        return np.asarray(bm3d.bm3d(image, sigma_psd=sigma))
    rgb = np.moveaxis(image, channel_axis, -1)
    if rgb.shape[-1] == 3:
        out = np.asarray(bm3d.bm3d_rgb(rgb, sigma_psd=sigma))
    else:
        out = np.stack([np.asarray(bm3d.bm3d(rgb[..., c], sigma_psd=sigma)) for c in range(rgb.shape[-1])], axis=-1)
    return np.moveaxis(out, -1, channel_axis)


def classical_denoise(image, method: str, *, sigma: float | None = None, channel_axis=None) -> np.ndarray:
    """Denoise an image with a classical method.

    Parameters
    ----------
    image : ndarray, float, shape (H, W) or (H, W, 3) with ``channel_axis=-1``; values on [0, 1]
        (a 3D array without ``channel_axis`` is treated as a volume). Never modified.
    method : str
        One of :func:`available_methods`:

        ``"nl_means"``
            :func:`skimage.restoration.denoise_nl_means`, fast mode, ``h = 0.8*sigma``,
            ``sigma=sigma``, patch size 5, patch distance 6.
        ``"tv"``
            :func:`skimage.restoration.denoise_tv_chambolle` with ``weight = 1.0*sigma``.
        ``"wavelet"``
            :func:`skimage.restoration.denoise_wavelet`, BayesShrink, soft thresholding,
            ``rescale_sigma=True``, wavelet ``db2``, the given sigma (needs PyWavelets).
        ``"bm3d"``
            the optional ``bm3d`` package (``bm3d_rgb`` for 3 channels); ``pip install bm3d``,
            non-commercial licence.
    sigma : float, optional
        Noise standard deviation on the [0, 1] scale (e.g. 25/255). Estimated with
        :func:`napari_clipdenoise.noise.estimate_noise_sigma` when None. ``0`` returns the input.
    channel_axis : int, optional
        Axis of colour channels.

    Returns
    -------
    ndarray, float32, same shape as ``image``

    Raises
    ------
    ValueError
        unknown ``method`` (the message lists the available ones), bad image or sigma.
    ImportError
        ``"bm3d"`` asked for without the ``bm3d`` package (the message says how to install it).
    """
    if method not in _KNOWN_METHODS:
        raise ValueError(f"method must be one of {available_methods()}; got {method!r}")
    array, channel_axis = _check_image(image, channel_axis)
    if method == "bm3d" and "bm3d" not in CLASSICAL_METHODS and not bm3d_available():
        raise ImportError(BM3D_INSTALL_HINT)
    if sigma is None:
        sigma = estimate_noise_sigma(array, channel_axis=channel_axis)
    sigma = _check_sigma(sigma)
    if sigma == 0.0:
        return array.astype(np.float32, copy=True)

    x = array.astype(np.float64)
    from skimage import restoration

    if method == "nl_means":
        out = restoration.denoise_nl_means(
            x,
            h=NL_MEANS_H_FACTOR * sigma,
            sigma=sigma,
            patch_size=NL_MEANS_PATCH_SIZE,
            patch_distance=NL_MEANS_PATCH_DISTANCE,
            fast_mode=True,
            channel_axis=channel_axis,
        )
    elif method == "tv":
        out = restoration.denoise_tv_chambolle(
            x, weight=TV_WEIGHT_FACTOR * sigma, max_num_iter=TV_MAX_ITERATIONS, channel_axis=channel_axis
        )
    elif method == "wavelet":
        try:
            import pywt  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the wavelet baseline needs PyWavelets: pip install PyWavelets") from exc
        out = restoration.denoise_wavelet(
            x,
            sigma=sigma,
            wavelet=WAVELET,
            mode="soft",
            method="BayesShrink",
            rescale_sigma=True,
            channel_axis=channel_axis,
        )
    else:
        out = _bm3d(x, sigma, channel_axis)
    return np.asarray(out, dtype=np.float32)
