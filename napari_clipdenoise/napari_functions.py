"""Typed plain functions for napari scripts, workflows and magicgui (no dock widget needed).

Each takes and returns ``napari.types.ImageData`` (an array), so it can be used as

>>> from napari_clipdenoise.napari_functions import denoise_image, add_noise_image
>>> noisy = add_noise_image(viewer.layers["clean"].data, "gaussian", 25.0, seed=0)
>>> viewer.add_image(denoise_image(noisy, model="gaussian15"))

or from napari's Plugins menu, where magicgui builds a small form from the type
hints (see napari.yaml). torch is imported only when ``denoise_image`` runs.
"""

from typing import Literal

import numpy as np
from napari.types import ImageData

from .inference.options import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, DEVICES, PRECISIONS
from .unit_scale import UnitScale

NoiseKind = Literal["gaussian", "poisson", "poisson_peak", "spatial_gaussian", "speckle", "salt_pepper"]
ClassicalMethod = Literal["nl_means", "tv", "wavelet", "bm3d"]
Device = Literal[DEVICES]
Precision = Literal[PRECISIONS]


def denoise_image(
    image: ImageData,
    model: str = "gaussian15",
    axes: str = "",
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    device: Device = "auto",
    precision: Precision = "auto",
) -> ImageData:
    """Denoise an image with a CLIP denoiser; same shape and dtype out.

    Parameters
    ----------
    image : ndarray
        2D, 3D, RGB(A) or multichannel image (see :func:`napari_clipdenoise.denoise`).
    model : str
        Registry/cache name (``gaussian15``, ``srgb``, ``ldct``...) or a checkpoint path.
    axes : str
        Axis letters such as ``"ZYX"`` or ``"YXC"``; empty guesses them from the shape.
    tile_size, overlap : int
        Tile edge and overlap in pixels (tile 0 = each plane in one pass).
    device, precision : str
        ``"auto"`` picks the fastest available.
    """
    from .inference.pipeline import denoise

    return denoise(
        np.asarray(image) if not hasattr(image, "dtype") else image,
        model,
        axes=axes.strip() or None,
        tile_size=tile_size or None,
        overlap=overlap,
        device=device,
        precision=precision,
    )


def add_noise_image(
    image: ImageData,
    kind: NoiseKind = "gaussian",
    level: float = 25.0,
    seed: int = 0,
    rgb: bool = False,
) -> ImageData:
    """Add synthetic noise at ``level`` (the unit ``kind`` documents; e.g. sigma on 0-255), seeded.

    The image is mapped to [0, 1] first (uint8 by /255, floats in [0, 1] as they
    are, anything else by its own min/max) and the result is float32 on that same
    [0, 1] scale. See :data:`napari_clipdenoise.noise.NOISE_MODELS`.
    """
    from .noise import add_noise

    image = np.asarray(image)
    image01 = UnitScale.for_image(image).to_unit(image)
    return add_noise(image01, kind, level, rng=int(seed), channel_axis=-1 if rgb else None).astype(np.float32)


def classical_denoise_image(
    image: ImageData,
    method: ClassicalMethod = "nl_means",
    sigma: float = 0.0,
    rgb: bool = False,
) -> ImageData:
    """Denoise with a classical method (scikit-image NL-means, TV, wavelet; BM3D if installed).

    ``sigma`` is the noise standard deviation on the 0-255 scale (0 = estimate it).
    The image is mapped to [0, 1] as in :func:`add_noise_image`; the result is float32 on [0, 1].
    """
    from .baselines import classical_denoise

    image = np.asarray(image)
    image01 = UnitScale.for_image(image).to_unit(image)
    return classical_denoise(image01, method, sigma=sigma / 255.0 if sigma else None, channel_axis=-1 if rgb else None)
