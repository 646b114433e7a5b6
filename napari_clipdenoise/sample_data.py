"""Sample data for napari: noisy images made offline from scikit-image's bundled images.

Every sample is seeded (the same pixels on every call), small enough to be made
in well under a second or two, and comes with its clean reference as a hidden
second layer, so the comparison widget can measure PSNR/SSIM against it.
Each function returns napari ``LayerData`` tuples ``(data, kwargs, "image")``.
"""

from __future__ import annotations

import numpy as np

SEED = 0
#: Gaussian noise level of the noisy photograph, on the 0-255 scale.
PHOTO_SIGMA = 25.0
#: Incident photons per detector bin for the simulated CT scans.
CT_LOW_DOSE_PHOTONS = 5e3
CT_FULL_DOSE_PHOTONS = 1e6
#: Largest line integral of the phantom (attenuation in units of 1/pixel summed along a ray).
CT_MAX_ATTENUATION = 3.0
#: Voxel size of the synthetic stack, Z Y X, in micrometres.
STACK_SCALE = (2.0, 0.5, 0.5)


def _gaussian_uint8(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def noisy_photograph() -> list[tuple]:
    """The ``camera`` photograph (512 x 512, uint8) with Gaussian noise of sigma 25 (0-255 scale)."""
    from skimage import data

    clean = data.camera()
    noisy = _gaussian_uint8(clean, PHOTO_SIGMA, np.random.default_rng(SEED))
    info = {"source": "skimage.data.camera", "noise": f"gaussian sigma {PHOTO_SIGMA:g}/255", "seed": SEED}
    return [
        (clean, {"name": "camera_clean", "visible": False, "metadata": {**info, "noise": "none (reference)"}}, "image"),
        (noisy, {"name": "camera_noisy", "metadata": info}, "image"),
    ]


def noisy_rgb() -> list[tuple]:
    """The ``astronaut`` photograph (256 x 256 x 3, uint8) with Gaussian noise of sigma 25 per channel."""
    from skimage import data, transform

    clean = transform.resize(data.astronaut(), (256, 256), order=1, anti_aliasing=True, preserve_range=True)
    clean = np.clip(np.rint(clean), 0, 255).astype(np.uint8)
    noisy = _gaussian_uint8(clean, PHOTO_SIGMA, np.random.default_rng(SEED + 1))
    info = {
        "source": "skimage.data.astronaut (resized to 256 x 256)",
        "noise": f"gaussian sigma {PHOTO_SIGMA:g}/255",
        "seed": SEED + 1,
    }
    return [
        (
            clean,
            {
                "name": "astronaut_clean",
                "rgb": True,
                "visible": False,
                "metadata": {**info, "noise": "none (reference)"},
            },
            "image",
        ),
        (noisy, {"name": "astronaut_noisy", "rgb": True, "metadata": info}, "image"),
    ]


def simulate_ct(phantom: np.ndarray, photons: float, *, angles: int, rng: np.random.Generator | None) -> np.ndarray:
    """Filtered back-projection of a simulated transmission scan of ``phantom``.

    The phantom is scaled so the longest ray is attenuated by ``CT_MAX_ATTENUATION``;
    detector counts are Poisson with mean ``photons * exp(-line integral)`` (no
    noise when ``rng`` is None); the log-transformed sinogram is reconstructed with
    a ramp filter. The result is in the phantom's own intensity units.
    """
    from skimage.transform import iradon, radon

    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    sinogram = radon(phantom, theta=theta, circle=True)
    per_unit = CT_MAX_ATTENUATION / sinogram.max()
    if rng is not None:
        counts = rng.poisson(photons * np.exp(-sinogram * per_unit))
        sinogram = -np.log(np.maximum(counts, 1) / photons) / per_unit
    return iradon(sinogram, theta=theta, filter_name="ramp", circle=True).astype(np.float32)


def low_dose_ct() -> list[tuple]:
    """A low-dose CT slice of the Shepp-Logan phantom (256 x 256, float32) and its full-dose reference.

    Radon transform over 256 angles, Poisson detector counts at 5,000 photons per
    bin (low dose) and at 1,000,000 (full dose), ramp-filtered back-projection.
    """
    from skimage import data, transform

    phantom = transform.resize(data.shepp_logan_phantom(), (256, 256), order=1, anti_aliasing=True)
    rng = np.random.default_rng(SEED + 2)
    full = simulate_ct(phantom, CT_FULL_DOSE_PHOTONS, angles=256, rng=rng)
    low = simulate_ct(phantom, CT_LOW_DOSE_PHOTONS, angles=256, rng=rng)
    info = {
        "source": "skimage.data.shepp_logan_phantom (256 x 256)",
        "angles": 256,
        "seed": SEED + 2,
        "reconstruction": "filtered back-projection (ramp)",
    }
    limits = (0.0, 0.6)  # a soft-tissue window: the skull saturates, the dose noise shows
    return [
        (
            full,
            {
                "name": "ct_full_dose",
                "visible": False,
                "contrast_limits": limits,
                "colormap": "gray",
                "metadata": {**info, "photons_per_bin": CT_FULL_DOSE_PHOTONS},
            },
            "image",
        ),
        (
            low,
            {
                "name": "ct_low_dose",
                "contrast_limits": limits,
                "colormap": "gray",
                "metadata": {**info, "photons_per_bin": CT_LOW_DOSE_PHOTONS},
            },
            "image",
        ),
    ]


def synthetic_volume(shape: tuple[int, int, int] = (24, 128, 128), *, seed: int = SEED) -> np.ndarray:
    """A smooth 3D 'cells' volume in [0, 1]: blurred binary blobs with a soft background."""
    from scipy import ndimage
    from skimage.data import binary_blobs

    size = max(shape)
    blobs = binary_blobs(length=size, n_dim=3, volume_fraction=0.12, blob_size_fraction=0.12, rng=seed)
    blobs = blobs[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    # anisotropic blur: the voxels are 4x longer in Z than in Y/X
    volume = ndimage.gaussian_filter(blobs, sigma=(0.5, 1.5, 1.5))
    return (0.08 + 0.8 * volume / max(float(volume.max()), 1e-6)).astype(np.float32)


def noisy_stack() -> list[tuple]:
    """A noisy synthetic 3D stack (24 x 128 x 128, uint16, Poisson, ~60 photons peak); voxels 2 x 0.5 x 0.5 um."""
    clean = synthetic_volume()
    peak = 60.0
    rng = np.random.default_rng(SEED + 3)
    noisy = (rng.poisson(clean * peak) * 50 + 100).astype(np.uint16)
    reference = np.rint(clean * peak * 50 + 100).astype(np.uint16)
    common = {"scale": STACK_SCALE, "units": ("µm", "µm", "µm"), "axis_labels": ("z", "y", "x")}
    info = {
        "source": "synthetic (skimage.data.binary_blobs, blurred)",
        "noise": f"poisson, peak {peak:g} photons",
        "seed": SEED + 3,
    }
    return [
        (
            reference,
            {**common, "name": "stack_clean", "visible": False, "metadata": {**info, "noise": "none (reference)"}},
            "image",
        ),
        (noisy, {**common, "name": "stack_noisy", "metadata": info}, "image"),
    ]
