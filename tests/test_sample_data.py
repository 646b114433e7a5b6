"""Sample data: each sample loads through napari's sample menu machinery into a real viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_clipdenoise import sample_data  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"


SAMPLES = {  # key -> (noisy layer, clean reference layer)
    "noisy_photograph": ("camera_noisy", "camera_clean"),
    "noisy_rgb": ("astronaut_noisy", "astronaut_clean"),
    "low_dose_ct": ("ct_low_dose", "ct_full_dose"),
    "noisy_stack": ("stack_noisy", "stack_clean"),
}


@pytest.mark.gui
def test_each_sample_opens_in_viewer(make_napari_viewer, npe2pm):
    viewer = make_napari_viewer()
    with npe2pm.tmp_plugin(manifest=str(MANIFEST)) as plugin:
        for key, (noisy, clean) in SAMPLES.items():
            before = len(viewer.layers)
            viewer.open_sample(plugin.name, key)
            assert [layer.name for layer in viewer.layers][before:] == [clean, noisy], key
            noisy_layer, clean_layer = viewer.layers[noisy], viewer.layers[clean]
            assert noisy_layer.visible and not clean_layer.visible
            assert noisy_layer.data.shape == clean_layer.data.shape
            assert noisy_layer.data.dtype == clean_layer.data.dtype
            assert not np.array_equal(noisy_layer.data, clean_layer.data)
            assert noisy_layer.metadata["seed"] == clean_layer.metadata["seed"]
    stack = viewer.layers["stack_noisy"]
    np.testing.assert_allclose(stack.scale, (2.0, 0.5, 0.5))
    assert [str(unit) for unit in stack.units] == ["micrometer"] * 3
    assert viewer.layers["astronaut_noisy"].rgb


def test_samples_are_seeded():
    for make in (sample_data.noisy_photograph, sample_data.noisy_rgb, sample_data.noisy_stack):
        first, second = make(), make()
        for (a, _, _), (b, _, _) in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)


def test_noisy_photograph_has_gaussian_sigma_25():
    (clean, _, _), (noisy, meta, _) = sample_data.noisy_photograph()
    assert clean.shape == (512, 512) and noisy.dtype == np.uint8
    # away from the clipped extremes the difference is the added noise
    mid = (clean > 60) & (clean < 195)
    difference = noisy[mid].astype(float) - clean[mid]
    assert abs(difference.std() - 25) < 1.0 and abs(difference.mean()) < 0.5


def test_rgb_sample_is_colour():
    (clean, kwargs, _), _ = sample_data.noisy_rgb()
    assert clean.shape == (256, 256, 3) and kwargs["rgb"] is True


def test_low_dose_ct_is_noisier_than_full_dose():
    from skimage import data, transform

    (full, _, _), (low, meta, _) = sample_data.low_dose_ct()
    phantom = transform.resize(data.shepp_logan_phantom(), full.shape, order=1, anti_aliasing=True)
    inside = phantom > 0.05
    error_full = np.sqrt(np.mean((full - phantom)[inside] ** 2))
    error_low = np.sqrt(np.mean((low - phantom)[inside] ** 2))
    assert error_low > 1.3 * error_full
    assert meta["metadata"]["photons_per_bin"] < 1e4


def test_stack_has_physical_scale():
    _, (noisy, kwargs, layer_type) = sample_data.noisy_stack()
    assert noisy.ndim == 3 and noisy.dtype == np.uint16 and layer_type == "image"
    assert kwargs["scale"] == (2.0, 0.5, 0.5) and kwargs["axis_labels"] == ("z", "y", "x")
