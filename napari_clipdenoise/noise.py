"""Noise synthesis for images on the [0, 1] scale, and the reference evaluation protocol's noise.

Two families live here:

- :func:`add_noise`: the general noise models used by the comparison widget and the training /
  evaluation tools, drawn from a :class:`numpy.random.Generator` (seeded => reproducible).
- ``reference_*``: the exact synthesis of the paper's evaluation protocol (METHOD.md section 4).
  They draw from NumPy's LEGACY global state, in the reference's draw order, so that after
  ``np.random.seed(0)`` they give the authors' noisy inputs bit for bit. The caller seeds.

Only numpy, scipy and (for :func:`estimate_noise_sigma`) scikit-image are imported.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_CLIP",
    "LEVEL_UNITS",
    "NOISE_MODELS",
    "REFERENCE_KINDS",
    "REFERENCE_LEVELS",
    "TYPICAL_LEVELS",
    "add_noise",
    "estimate_noise_sigma",
    "reference_gauss",
    "reference_noisy",
    "reference_poisson",
    "reference_spatial_gauss",
]

NOISE_MODELS: dict[str, str] = {
    "gaussian": "additive white Gaussian noise; level = sigma on the 0-255 scale",
    "poisson": "the paper's Poisson noise; level = scale (noise amplitude multiplier, e.g. 2-3.5)",
    "poisson_peak": "Poisson (shot) noise; level = peak photon count of a pixel of value 1",
    "spatial_gaussian": "Gaussian noise blurred by a 3x3 box filter; level = sigma (0-255 scale) before blurring",
    "speckle": "multiplicative noise x + x*N(0, level^2); level = relative standard deviation",
    "salt_pepper": "impulse noise; level = fraction of pixels set to 0 or 1",
}

#: The unit of each noise model's level, as forms and axis labels show it.
LEVEL_UNITS: dict[str, str] = {
    "gaussian": "sigma (0-255 scale)",
    "poisson": "scale (the paper's Poisson parameter)",
    "poisson_peak": "peak photon count",
    "spatial_gaussian": "sigma before the 3x3 blur (0-255 scale)",
    "speckle": "relative standard deviation",
    "salt_pepper": "fraction of pixels",
}
#: Levels worth trying first, per noise model (the comparison's defaults; forms start at the middle one).
TYPICAL_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian": (15, 25, 50),
    "poisson": (2, 2.5, 3, 3.5),
    "poisson_peak": (100, 30, 10),
    "spatial_gaussian": (40, 45, 50, 55),
    "speckle": (0.1, 0.2, 0.3),
    "salt_pepper": (0.01, 0.05, 0.1),
}

# Whether add_noise clips its result to [0, 1] when ``clip`` is not given. Gaussian and
# spatially correlated noise follow the paper (no clip); Poisson models clip as the paper does.
# Speckle is left unclipped like the other additive models (zero-mean, unbiased).
DEFAULT_CLIP: dict[str, bool] = {
    "gaussian": False,
    "poisson": True,
    "poisson_peak": True,
    "spatial_gaussian": False,
    "speckle": False,
    "salt_pepper": False,
}

# Names and default levels of the reference evaluation grid (METHOD.md section 4).
REFERENCE_KINDS: tuple[str, ...] = ("gauss", "spatial_gauss", "poisson")
REFERENCE_LEVELS: dict[str, tuple[float, ...]] = {
    "gauss": (15, 25, 50),
    "spatial_gauss": (40, 45, 50, 55),
    "poisson": (2, 2.5, 3, 3.5),
}

_BOX_3X3 = np.ones((3, 3), dtype=np.float64) / 9.0


# --------------------------------------------------------------------------- validation


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(rng)
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"rng must be None, a non-negative integer seed or a numpy.random.Generator; got {rng!r}")
    if rng < 0:
        raise ValueError(f"rng seed must be a non-negative integer; got {rng!r}")
    return np.random.default_rng(int(rng))


def _check_level(kind: str, level) -> float:
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real):
        raise TypeError(f"level must be a real number for noise {kind!r}; got {level!r}")
    level = float(level)
    if not np.isfinite(level):
        raise ValueError(f"level must be finite for noise {kind!r}; got {level!r}")
    if kind == "poisson_peak":
        if level <= 0:
            raise ValueError(f"level (peak photon count) must be > 0 for noise 'poisson_peak'; got {level!r}")
    elif kind == "salt_pepper":
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"level (fraction of pixels) must be in [0, 1] for noise 'salt_pepper'; got {level!r}")
    elif level < 0:
        raise ValueError(f"level must be >= 0 for noise {kind!r}; got {level!r}")
    return level


def _check_image(image, kind: str, name: str = "image") -> np.ndarray:
    """Float array, at least 2D, finite; inside [0, 1] for "poisson", >= 0 for "poisson_peak".

    The additive models accept values slightly outside [0, 1] (e.g. an already noisy, unclipped
    image), so that noises can be chained. Returned as is, never modified.
    """
    array = np.asarray(image)
    if array.dtype.kind not in "f":
        hint = " (divide by the dtype's maximum, e.g. skimage.util.img_as_float)" if array.dtype.kind in "uib" else ""
        raise ValueError(f"{name} must be a floating-point array on the [0, 1] scale; got dtype {array.dtype}{hint}")
    if array.ndim < 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty array with at least 2 dimensions (Y, X); got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; replace them before adding noise")
    low, high = float(array.min()), float(array.max())
    if kind == "poisson" and (low < 0.0 or high > 1.0):
        raise ValueError(
            f"{name} values must lie in [0, 1] for noise 'poisson' (quantized to 8 bits); got min {low:g}, "
            f"max {high:g} (rescale the image to [0, 1] first)"
        )
    if kind == "poisson_peak" and low < 0.0:
        raise ValueError(f"{name} values must be >= 0 for noise 'poisson_peak' (photon rates); got min {low:g}")
    return array


def _resolve_channel_axis(array: np.ndarray, channel_axis) -> int | None:
    if channel_axis is None:
        # The documented guess: an H x W x 3 (or x 4) array is RGB(A) with channels last.
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            return array.ndim - 1
        return None
    if isinstance(channel_axis, (bool, np.bool_)) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be None or an integer axis; got {channel_axis!r}")
    if not -array.ndim <= channel_axis < array.ndim or array.ndim < 3:
        raise ValueError(
            f"channel_axis={channel_axis} is not valid for an image of shape {array.shape} "
            "(a channel axis needs at least 2 further spatial axes)"
        )
    return int(channel_axis) % array.ndim


def _result_dtype(array: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if array.dtype == np.float64 else np.dtype(np.float32)


# --------------------------------------------------------------------------- general models


def _box_blur_planes(noise: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """3x3 box (1/9) with reflect borders over the two last spatial axes, per plane/channel."""
    moved = noise if channel_axis is None else np.moveaxis(noise, channel_axis, -1)
    if channel_axis is not None:
        moved = np.moveaxis(moved, -1, 0)  # (C, ..., Y, X)
    flat = moved.reshape((-1,) + moved.shape[-2:])
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        out[i] = ndimage.convolve(flat[i], _BOX_3X3, mode="reflect")
    out = out.reshape(moved.shape)
    if channel_axis is not None:
        out = np.moveaxis(np.moveaxis(out, 0, -1), -1, channel_axis)
    return out


def _paper_poisson_noise(x: np.ndarray, scale: float, draw_poisson) -> np.ndarray:
    """(Poisson(q*v)/v - q) * scale with q = x quantized to 8 bits, v = 2^ceil(log2(#unique q))."""
    q = np.clip(np.round(x * np.float32(255)), 0, 255) / np.float32(255)
    q = q.astype(np.float32, copy=False)
    levels = 2.0 ** np.ceil(np.log2(len(np.unique(q))))
    counts = draw_poisson(q.astype(np.float64) * levels)
    photon = (counts / levels).astype(np.float32)
    return (photon - q) * np.float32(scale)


def add_noise(image, kind: str, level, *, rng=None, clip: bool | None = None, channel_axis=None) -> np.ndarray:
    """Add synthetic noise of a given model and level to an image on the [0, 1] scale.

    Parameters
    ----------
    image : ndarray, float, shape (Y, X), (Y, X, 3) or any (..., Y, X)
        Clean image on the [0, 1] scale (the levels refer to it). ``"poisson"`` needs values in
        [0, 1], ``"poisson_peak"`` values >= 0; the other models accept any finite values, so an
        unclipped noisy image can be given more noise. Never modified.
    kind : str
        One of :data:`NOISE_MODELS`:

        ``"gaussian"``
            ``x + N(0, (level/255)^2)``; ``level`` is sigma on the 0-255 scale (e.g. 15, 25, 50).
        ``"poisson"``
            the paper's parameterization: ``q`` = ``x`` rounded to 8 bits,
            ``v = 2**ceil(log2(#unique values of q))``, ``noise = (Poisson(q*v)/v - q) * level``,
            result ``x + noise``; ``level`` is the paper's "scale" (2, 2.5, 3, 3.5).
        ``"poisson_peak"``
            ``Poisson(x*level)/level``; ``level`` is the photon count of a pixel of value 1 (> 0).
        ``"spatial_gaussian"``
            white ``N(0, (level/255)^2)`` noise, per channel, convolved with a 3x3 box (1/9) with
            reflect borders over the two spatial axes, then added.
        ``"speckle"``
            ``x + x*N(0, level^2)``.
        ``"salt_pepper"``
            ``round(level * #pixels)`` pixels, chosen without replacement, are set to 0 or 1 with
            equal probability (all channels of a pixel together).
    level : float
        Noise level in the unit the model documents above.
    rng : None, int, numpy.random.Generator (or SeedSequence / BitGenerator), optional
        Source of randomness. An integer seed gives identical results on every call; a Generator
        is advanced (pass a fresh ``np.random.default_rng(seed)`` to repeat a result). None draws
        fresh OS entropy.
    clip : bool, optional
        Clip the result to [0, 1]. Default :data:`DEFAULT_CLIP` [kind]: as the paper, no clipping
        for ``gaussian``/``spatial_gaussian`` (and ``speckle``), clipping for the Poisson models.
    channel_axis : int, optional
        Axis holding colour channels (relevant to ``spatial_gaussian`` and ``salt_pepper``).
        Default: an (Y, X, 3) or (Y, X, 4) array is taken as channels-last; otherwise no channel axis.

    Returns
    -------
    ndarray, same shape as ``image``
        float64 for a float64 input, float32 otherwise. A new array.

    Raises
    ------
    ValueError
        unknown ``kind``, a level out of range, a non-float / NaN image, values out of range for
        the Poisson models.
    TypeError
        ``level`` not a real number, ``rng`` of an unsupported type.
    """
    if kind not in NOISE_MODELS:
        raise ValueError(f"kind must be one of {sorted(NOISE_MODELS)}; got {kind!r}")
    level = _check_level(kind, level)
    array = _check_image(image, kind)
    cax = _resolve_channel_axis(array, channel_axis)
    generator = _as_rng(rng)
    if clip is None:
        clip = DEFAULT_CLIP[kind]
    out_dtype = _result_dtype(array)
    x = array.astype(np.float64)

    if kind == "gaussian":
        noisy = x + generator.normal(0.0, level / 255.0, size=x.shape)
    elif kind == "spatial_gaussian":
        white = generator.normal(0.0, level / 255.0, size=x.shape)
        noisy = x + _box_blur_planes(white, cax)
    elif kind == "poisson":
        noise = _paper_poisson_noise(array.astype(np.float32), level, generator.poisson)
        noisy = x + noise.astype(np.float64)
    elif kind == "poisson_peak":
        noisy = generator.poisson(x * level) / level
    elif kind == "speckle":
        noisy = x + x * generator.normal(0.0, level, size=x.shape)
    else:  # salt_pepper
        noisy = x.copy()
        spatial_shape = x.shape if cax is None else tuple(s for i, s in enumerate(x.shape) if i != cax)
        n_pixels = int(np.prod(spatial_shape))
        n_hit = round(level * n_pixels)
        hits = generator.choice(n_pixels, size=n_hit, replace=False)
        values = (generator.random(n_hit) < 0.5).astype(np.float64)
        coords = np.unravel_index(hits, spatial_shape)
        if cax is None:
            noisy[coords] = values
        else:
            np.moveaxis(noisy, cax, -1)[coords] = values[:, None]  # a view: writes into noisy

    if clip:
        noisy = np.clip(noisy, 0.0, 1.0)
    return np.ascontiguousarray(noisy, dtype=out_dtype)


# --------------------------------------------------------------------------- reference protocol


def _check_reference_clean(clean) -> np.ndarray:
    array = np.asarray(clean)
    if array.dtype == np.uint8:
        # How the reference reads its test images: 8-bit RGB divided by 255 in float32.
        array = array.astype(np.float32) / np.float32(255)
    elif array.dtype != np.float32:
        raise ValueError(
            f"clean must be float32 (8-bit image / 255) or uint8 to reproduce the reference inputs; got {array.dtype}"
        )
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"clean must have shape (H, W) or (H, W, C); got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("clean contains NaN or infinite values")
    return array


def _check_reference_level(name: str, value) -> float:
    valid = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
    if not valid or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def reference_gauss(clean, sigma) -> np.ndarray:
    """The reference's Gaussian test noise: ``clean + np.random.normal(0, sigma/255, clean.shape)``.

    Draws from NumPy's legacy global state (seed it with ``np.random.seed(0)`` before each image).

    Parameters
    ----------
    clean : ndarray, float32 (or uint8, divided by 255 in float32), shape (H, W, 3) or (H, W)
    sigma : float
        Standard deviation on the 0-255 scale (15, 25, 50 in the paper).

    Returns
    -------
    ndarray, float64, same shape; not clipped.
    """
    x = _check_reference_clean(clean)
    sigma = _check_reference_level("sigma", sigma)
    return x + np.random.normal(0, sigma / 255.0, x.shape)


def reference_spatial_gauss(clean, sigma) -> np.ndarray:
    """The reference's spatially correlated Gaussian test noise.

    ``noise = np.random.normal(0, sigma/255, clean.shape)`` (one draw, C order), then every channel
    ``noise[:, :, c]`` is convolved with a 3x3 box of 1/9 by :func:`scipy.ndimage.convolve` (default
    ``mode="reflect"``); the result is ``clean + noise`` (float64, not clipped). Legacy global state.

    Parameters
    ----------
    clean : ndarray, float32 (or uint8), shape (H, W, 3) or (H, W)
    sigma : float
        Standard deviation of the white noise before blurring, 0-255 scale (40-55 in the paper).

    Returns
    -------
    ndarray, float64, same shape.
    """
    x = _check_reference_clean(clean)
    sigma = _check_reference_level("sigma", sigma)
    noise = np.random.normal(0, sigma / 255.0, x.shape)
    if noise.ndim == 2:
        noise = ndimage.convolve(noise, _BOX_3X3)
    else:
        for c in range(noise.shape[2]):
            noise[:, :, c] = ndimage.convolve(noise[:, :, c], _BOX_3X3)
    return x + noise


def reference_poisson(clean, scale) -> np.ndarray:
    """The reference's Poisson test noise (BasicSR-style "scale" parameterization).

    ``q = clip(round(clean*255), 0, 255)/255`` (float32); ``v = 2**ceil(log2(#unique values of q))``
    over the whole image; ``noise = (float32(np.random.poisson(q*v)/v) - q) * scale`` (float32);
    result ``clip(clean + noise, 0, 1)``. Legacy global state, one Poisson draw.

    Parameters
    ----------
    clean : ndarray, float32 (or uint8), shape (H, W, 3) or (H, W)
    scale : float
        Noise amplitude multiplier (2, 2.5, 3, 3.5 in the paper).

    Returns
    -------
    ndarray, float32, same shape, in [0, 1].
    """
    x = _check_reference_clean(clean)
    scale = _check_reference_level("scale", scale)
    if x.min() < 0 or x.max() > 1:
        raise ValueError("clean values must lie in [0, 1] for Poisson noise")
    noise = _paper_poisson_noise(x, scale, np.random.poisson)
    return np.clip(x + noise, 0, 1)


def reference_noisy(clean, kind: str, level) -> np.ndarray:
    """Dispatch to the reference synthesis: ``kind`` in ``{"gauss", "spatial_gauss", "poisson"}``.

    See :func:`reference_gauss`, :func:`reference_spatial_gauss`, :func:`reference_poisson`; seed
    the legacy global state (``np.random.seed(0)``) before each image as the reference does.
    """
    if kind == "gauss":
        return reference_gauss(clean, level)
    if kind == "spatial_gauss":
        return reference_spatial_gauss(clean, level)
    if kind == "poisson":
        return reference_poisson(clean, level)
    raise ValueError(f"kind must be one of {list(REFERENCE_KINDS)}; got {kind!r}")


# --------------------------------------------------------------------------- estimation


def estimate_noise_sigma(image, *, channel_axis=None) -> float:
    """Estimate the standard deviation of additive white Gaussian noise in an image.

    Wavelet-based robust (MAD) estimator of :func:`skimage.restoration.estimate_sigma`, averaged
    over channels. Needs PyWavelets.

    Parameters
    ----------
    image : ndarray, shape (Y, X), (Z, Y, X) or with a channel axis
        Any real dtype; the estimate is on the image's own scale (for a [0, 1] image with noise of
        sigma 25 on the 0-255 scale it is about 25/255).
    channel_axis : int, optional
        Axis of colour channels, estimated separately then averaged.

    Returns
    -------
    float
    """
    array = np.asarray(image)
    if array.dtype.kind not in "uif":
        raise ValueError(f"image must be a real-valued numeric array; got dtype {array.dtype}")
    if array.ndim < 2 or array.size == 0:
        raise ValueError(f"image must be a non-empty array with at least 2 dimensions; got shape {array.shape}")
    if channel_axis is not None:
        _resolve_channel_axis(array, channel_axis)
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values")
    try:
        import pywt  # noqa: F401  (estimate_sigma needs it; give a clear message if missing)
        from skimage.restoration import estimate_sigma
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "estimating the noise level needs PyWavelets: pip install PyWavelets (or napari-clipdenoise[baselines])"
        ) from exc
    return float(estimate_sigma(array, channel_axis=channel_axis, average_sigmas=True))
