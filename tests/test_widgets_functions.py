"""The typed plain functions (napari_functions) and the two forms of the Plugins menu, in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_clipdenoise import metrics  # noqa: E402
from napari_clipdenoise.napari_functions import add_noise_image, classical_denoise_image, denoise_image  # noqa: E402
from napari_clipdenoise.noise import add_noise  # noqa: E402

WAIT_MS = 30_000


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


# --------------------------------------------------------------------------- the forms (problem 8)
def _form(viewer, name):
    _, form = viewer.window.add_plugin_dock_widget("napari-clipdenoise", name)
    return form


def _call_and_wait(qtbot, viewer, form, count):
    form()
    qtbot.waitUntil(lambda: len(viewer.layers) == count, timeout=WAIT_MS)


@pytest.mark.gui
def test_add_noise_form_adds_a_new_layer_per_run_in_the_inputs_units(make_napari_viewer, qtbot, rng):
    viewer = make_napari_viewer()
    image = rng.integers(200, 3000, (32, 40)).astype(np.uint16)
    viewer.add_image(image, name="cells", scale=(0.5, 0.25), units=("µm", "µm"), contrast_limits=(200, 3000))
    form = _form(viewer, "Add synthetic noise")
    assert [w.name for w in form] == ["image", "kind", "level", "seed", "viewer", "call_button"]  # no rgb box
    assert "sigma" in form.level.tooltip and form.level.native.suffix() == " σ (0-255)"  # unit and tooltip
    form.kind.value = "poisson_peak"
    assert form.level.native.suffix() == " photons at peak" and form.level.value == 30.0
    form.kind.value = "gaussian"
    form.level.value = 25.0
    _call_and_wait(qtbot, viewer, form, 2)
    _call_and_wait(qtbot, viewer, form, 3)  # a second run does not replace the first
    first, second = viewer.layers["cells + gaussian 25"], viewer.layers["cells + gaussian 25 (2)"]
    for layer in (first, second):
        assert layer.data.dtype == np.uint16 and layer.data.shape == image.shape
        np.testing.assert_allclose(layer.scale, (0.5, 0.25))
        assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")
    # the input's own units: the noise is the core's, on the image's min-max scale, mapped back
    scale = image.max() - image.min()
    expected = add_noise((image.astype(np.float32) - image.min()) / scale, "gaussian", 25.0, rng=0)
    expected = np.clip(np.rint(expected * scale + image.min()), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(first.data, expected)
    record = first.metadata["clipdenoise"]
    assert record["operation"] == "add_noise" and record["input_layer"] == "cells"
    assert record["kind"] == "gaussian" and record["level"] == 25.0 and record["seed"] == 0
    assert record["unit_scale"] == {"low": float(image.min()), "high": float(image.max())}


@pytest.mark.gui
def test_forms_take_rgb_from_the_layer(make_napari_viewer, qtbot, rng):
    viewer = make_napari_viewer()
    photo = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    viewer.add_image(photo, name="photo", rgb=True)
    form = _form(viewer, "Add synthetic noise")
    form.kind.value = "salt_pepper"
    form.level.value = 0.2
    _call_and_wait(qtbot, viewer, form, 2)
    noisy = viewer.layers["photo + salt_pepper 0.2"]
    assert noisy.rgb and noisy.data.dtype == np.uint8
    changed = np.any(noisy.data != photo, axis=-1)
    # salt and pepper hits all channels of a pixel together (channel_axis from the layer's rgb flag)
    assert np.all((noisy.data[changed] == 0).all(axis=-1) | (noisy.data[changed] == 255).all(axis=-1))


@pytest.mark.gui
def test_classical_form_new_layers_dtype_provenance_and_choices(make_napari_viewer, qtbot):
    from skimage import data, transform

    from napari_clipdenoise.baselines import available_methods

    viewer = make_napari_viewer()
    clean = transform.resize(data.camera(), (64, 64), preserve_range=True).astype(np.uint8)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    viewer.add_image(noisy, name="noisy")
    form = _form(viewer, "Classical denoise")
    assert list(form.method.choices) == available_methods()  # bm3d only when it is installed
    assert form.sigma.native.specialValueText() == "estimate" and "0-255" in form.sigma.native.suffix()
    form.method.value = "tv"
    form.sigma.value = 25.0
    _call_and_wait(qtbot, viewer, form, 2)
    _call_and_wait(qtbot, viewer, form, 3)
    out = viewer.layers["noisy · tv"]
    assert "noisy · tv (2)" in viewer.layers
    assert out.data.dtype == np.uint8
    assert metrics.psnr(clean, out.data, data_range=255) > metrics.psnr(clean, noisy, data_range=255)
    assert out.metadata["clipdenoise"]["method"] == "tv"


@pytest.mark.gui
def test_forms_without_a_layer_give_one_clear_message(make_napari_viewer, qtbot, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda message: shown.append(message))
    viewer = make_napari_viewer()
    for name in ("Add synthetic noise", "Classical denoise"):
        form = _form(viewer, name)
        worker = form()  # no image layer: no exception, a message
        qtbot.waitUntil(lambda worker=worker: not worker.is_running, timeout=WAIT_MS)
    assert len(shown) == 2 and all("no image layer" in message for message in shown)
    assert len(viewer.layers) == 0
    # a constant image: the core's message, as a notification, not a traceback
    viewer.add_image(np.full((16, 16), 7, np.uint16), name="flat")
    form = _form(viewer, "Add synthetic noise")
    form.image.value = viewer.layers["flat"]
    worker = form()
    qtbot.waitUntil(lambda: len(shown) == 3, timeout=WAIT_MS)
    assert "constant" in shown[-1]
    assert len(viewer.layers) == 1


def test_form_choices_follow_the_core():
    from napari_clipdenoise.napari_functions import add_noise_widget, classical_denoise_widget
    from napari_clipdenoise.noise import NOISE_MODELS

    form = add_noise_widget()
    assert set(form.kind.choices) == set(NOISE_MODELS)
    form = classical_denoise_widget()
    from napari_clipdenoise.baselines import CLASSICAL_METHODS

    assert set(form.method.choices) == set(CLASSICAL_METHODS)
