"""The typed plain functions (napari_functions) and their magicgui forms."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_clipdenoise import metrics  # noqa: E402
from napari_clipdenoise.napari_functions import add_noise_image, classical_denoise_image, denoise_image  # noqa: E402
from napari_clipdenoise.noise import add_noise  # noqa: E402


def test_denoise_image_keeps_shape_and_dtype(rgb_checkpoint, rng):
    image = rng.integers(0, 4000, (2, 32, 32)).astype(np.uint16)
    out = denoise_image(image, model=str(rgb_checkpoint), axes="CYX", tile_size=0, device="cpu", precision="fp32")
    assert out.shape == image.shape and out.dtype == np.uint16
    assert not np.array_equal(out, image)


def test_denoise_image_missing_model_names_the_fix(rng):
    from napari_clipdenoise.errors import ModelNotInstalledError

    with pytest.raises(ModelNotInstalledError, match="clipdenoise models import"):
        denoise_image(rng.random((32, 32), dtype=np.float32), model="gaussian15")


def test_add_noise_image_maps_uint8_to_unit_scale_and_is_seeded(rng):
    image = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    noisy = add_noise_image(image, "gaussian", 25.0, seed=3)
    expected = add_noise(image.astype(np.float32) / 255.0, "gaussian", 25.0, rng=3)
    assert noisy.dtype == np.float32
    np.testing.assert_allclose(noisy, expected, atol=1e-6)
    np.testing.assert_array_equal(add_noise_image(image, "gaussian", 25.0, seed=3), noisy)


def test_classical_denoise_image_improves_psnr():
    from skimage import data, transform

    clean = transform.resize(data.camera(), (96, 96), anti_aliasing=True).astype(np.float32)
    noisy = add_noise(clean, "gaussian", 25.0, rng=0)
    out = classical_denoise_image(noisy, "tv", sigma=25.0)
    assert out.shape == clean.shape
    assert metrics.psnr(clean, out) > metrics.psnr(clean, np.clip(noisy, 0, 1)) + 2


def test_magicgui_builds_forms_from_the_type_hints():
    from magicgui import magicgui

    form = magicgui(add_noise_image)
    assert form.kind.choices == ("gaussian", "poisson", "poisson_peak", "spatial_gaussian", "speckle", "salt_pepper")
    from napari_clipdenoise.noise import NOISE_MODELS

    assert set(form.kind.choices) == set(NOISE_MODELS)
    form = magicgui(classical_denoise_image)
    from napari_clipdenoise.baselines import CLASSICAL_METHODS

    assert set(CLASSICAL_METHODS) <= set(form.method.choices)
