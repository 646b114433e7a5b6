"""The Denoise dock widget in a real napari viewer (Xvfb), driven through its buttons."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_clipdenoise.widgets.denoise import DenoiseWidget  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def make_widget(viewer, checkpoint, *, tile=32, overlap=16):
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_checkpoint(checkpoint)
    widget.tile_size.setValue(tile)
    widget.overlap.setValue(overlap)
    widget.device.setCurrentText("cpu")
    widget.precision.setCurrentText("fp32")
    return widget


def click_and_wait(qtbot, widget, button=None):
    (button or widget.run_button).click()
    assert widget.is_running
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def test_denoise_2d_uint16_keeps_geometry_and_metadata(viewer, qtbot, rgb_checkpoint, rng):
    data = rng.integers(100, 4000, (48, 40)).astype(np.uint16)
    layer = viewer.add_image(
        data,
        name="cells",
        scale=(0.5, 0.25),
        translate=(10.0, -3.0),
        units=("µm", "µm"),
        axis_labels=("y", "x"),
        contrast_limits=(100, 3000),
        metadata={"source": "microscope"},
    )
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.layer_combo.layer() is layer
    assert widget.axes_edit.text() == "YX"
    assert not widget.preview_button.isEnabled()  # a single plane has no slice to preview
    widget.residual_check.setChecked(True)
    click_and_wait(qtbot, widget)

    result = viewer.layers["cells_denoised"]
    assert result.data.shape == data.shape and result.data.dtype == np.uint16
    np.testing.assert_allclose(result.scale, layer.scale)
    np.testing.assert_allclose(result.translate, layer.translate)
    assert tuple(str(u) for u in result.units) == ("micrometer", "micrometer")
    assert tuple(result.axis_labels) == ("y", "x")
    assert tuple(result.contrast_limits) == (100, 3000)
    assert result.metadata["source"] == "microscope"
    record = result.metadata["clipdenoise"]
    assert record["input_layer"] == "cells"
    assert record["model"]["in_channels"] == 3 and record["model"]["weights_sha256"]
    expected = {"axes": "YX", "tile_size": 32, "overlap": 16, "device": "cpu", "precision": "fp32"}
    assert {k: record["settings"][k] for k in expected} == expected
    residual = viewer.layers["cells_residual"]
    assert residual.data.dtype == np.float32
    np.testing.assert_array_equal(residual.data, data.astype(np.float32) - result.data.astype(np.float32))
    assert "Done" in widget.status.text()

    # running again replaces the result in place: same layer object, no new layers
    count = len(viewer.layers)
    viewer.layers.move(viewer.layers.index(result), 0)
    click_and_wait(qtbot, widget)
    assert len(viewer.layers) == count
    assert viewer.layers["cells_denoised"] is result
    assert viewer.layers.index(result) == 0


def test_denoise_rgb_layer(viewer, qtbot, rgb_checkpoint, rng):
    data = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    layer = viewer.add_image(data, name="photo", rgb=True, scale=(2.0, 2.0), translate=(5.0, 7.0))
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.axes_edit.text() == "YXC"
    click_and_wait(qtbot, widget)
    result = viewer.layers["photo_denoised"]
    assert result.rgb
    assert result.data.shape == data.shape and result.data.dtype == np.uint8
    np.testing.assert_allclose(result.scale, layer.scale)
    np.testing.assert_allclose(result.translate, layer.translate)


def test_denoise_3d_stack_and_preview_slice(viewer, qtbot, rgb_checkpoint, rng):
    data = rng.random((3, 32, 32), dtype=np.float32)
    layer = viewer.add_image(data, name="stack", scale=(2.0, 0.5, 0.5), translate=(1.0, 0.0, 0.0))
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.axes_edit.text() == "ZYX"
    assert widget.preview_button.isEnabled()

    viewer.dims.set_current_step(0, 2)  # third plane
    widget.residual_check.setChecked(True)
    click_and_wait(qtbot, widget, widget.preview_button)
    assert viewer.layers["stack_residual_preview"].data.shape == (1, 32, 32)
    preview = viewer.layers["stack_denoised_preview"]
    assert preview.data.shape == (1, 32, 32)
    np.testing.assert_allclose(preview.translate, (1.0 + 2 * 2.0, 0.0, 0.0))
    assert preview.metadata["clipdenoise"]["plane"] == {"0": 2}
    assert "stack_denoised" not in viewer.layers

    click_and_wait(qtbot, widget)
    result = viewer.layers["stack_denoised"]
    assert result.data.shape == data.shape and result.data.dtype == np.float32
    np.testing.assert_allclose(result.scale, layer.scale)
    np.testing.assert_allclose(result.translate, layer.translate)
    # the preview is the same computation as the full run's plane
    np.testing.assert_allclose(preview.data[0], result.data[2], atol=1e-5)
    assert viewer.layers["stack_residual"].data.shape == data.shape
    assert viewer.layers["stack_residual_preview"].data.shape == (1, 32, 32)  # untouched by the full run


def test_dask_backed_layer(viewer, qtbot, rgb_checkpoint, rng):
    da = pytest.importorskip("dask.array")
    data = da.from_array(rng.random((2, 32, 32), dtype=np.float32), chunks=(1, 32, 32))
    viewer.add_image(data, name="lazy")
    widget = make_widget(viewer, rgb_checkpoint)
    click_and_wait(qtbot, widget)
    result = viewer.layers["lazy_denoised"]
    assert result.data.shape == (2, 32, 32)


def test_edited_axes_are_validated(viewer, qtbot, rgb_checkpoint, rng):
    viewer.add_image(rng.random((2, 32, 32), dtype=np.float32), name="tzyx")
    widget = make_widget(viewer, rgb_checkpoint)
    qtbot.keyClicks(widget.axes_edit, "")  # focus
    widget.axes_edit.setText("YX")
    widget.axes_edit.textEdited.emit("YX")
    assert "3 dimensions" in widget.axes_note.text() or "letters" in widget.axes_note.text()
    assert not widget.preview_button.isEnabled()
    widget.run_button.click()
    assert not widget.is_running and "axes" in widget.status.text()
    widget.axes_edit.setText("CYX")  # 2 channels, denoised one by one
    widget.axes_edit.textEdited.emit("CYX")
    assert "2 channels" in widget.axes_note.text()
    click_and_wait(qtbot, widget)
    assert viewer.layers["tzyx_denoised"].metadata["clipdenoise"]["settings"]["axes"] == "CYX"


def test_cancel_mid_run_adds_nothing(viewer, qtbot, rgb_checkpoint, rng):
    viewer.add_image(rng.random((40, 64, 64), dtype=np.float32), name="long")
    widget = make_widget(viewer, rgb_checkpoint)
    layers_before = [layer.name for layer in viewer.layers]
    widget.run_button.click()
    # wait until tiles are being processed, then cancel
    qtbot.waitUntil(lambda: widget.progress_bar.maximum() > 0 and widget.progress_bar.value() >= 1, timeout=WAIT_MS)
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    assert [layer.name for layer in viewer.layers] == layers_before
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_bad_checkpoint_notifies_and_widget_still_works(viewer, qtbot, rgb_checkpoint, rng, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda message: shown.append(message))
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = make_widget(viewer, bad)
    click_and_wait(qtbot, widget)
    assert len(shown) == 1 and "broken.safetensors" in shown[0]
    assert "img_denoised" not in viewer.layers
    assert "failed" in widget.status.text()
    # pick a working checkpoint: the same widget now succeeds
    widget.set_checkpoint(rgb_checkpoint)
    click_and_wait(qtbot, widget)
    assert viewer.layers["img_denoised"].data.shape == (32, 32)


def test_missing_model_shows_install_hint_in_widget(viewer, qtbot, rng):
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_combo.set_source("gaussian15")
    assert widget.model_hint.isVisibleTo(widget)
    assert "clipdenoise models import" in widget.model_hint.text()
    assert "not installed" in widget.model_combo.currentText()
    click_and_wait(qtbot, widget)
    assert "img_denoised" not in viewer.layers
    assert "gaussian15" in widget.model_hint.text() and "not installed" in widget.status.text()


def test_installed_registry_model_is_selected_by_default(viewer, qtbot, installed_gaussian15, rng):
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = DenoiseWidget(viewer)
    assert widget.model_combo.source() == "gaussian15"
    assert widget.model_combo.currentText() == "gaussian15"
    assert not widget.model_hint.isVisibleTo(widget)


def test_load_checkpoint_entry_opens_a_file_dialog(viewer, qtbot, rgb_checkpoint, monkeypatch):
    from napari_clipdenoise.widgets import _model_combo

    widget = DenoiseWidget(viewer)
    combo = widget.model_combo
    before = combo.source()
    load_index = combo.findText(_model_combo.LOAD_CHECKPOINT)
    assert load_index == combo.count() - 1
    # the dialog is dismissed: the previous model stays selected
    monkeypatch.setattr(_model_combo.QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    combo.setCurrentIndex(load_index)
    combo.activated.emit(load_index)
    assert combo.source() == before
    # a file is chosen: it is listed by its name and selected
    monkeypatch.setattr(_model_combo.QFileDialog, "getOpenFileName", lambda *a, **k: (str(rgb_checkpoint), ""))
    combo.setCurrentIndex(load_index)
    combo.activated.emit(load_index)
    assert combo.source() == str(rgb_checkpoint)
    assert combo.currentText() == rgb_checkpoint.name


def test_large_lazy_layer_goes_through_a_zarr_store(viewer, qtbot, rgb_checkpoint, rng, tmp_path):
    da = pytest.importorskip("dask.array")
    pytest.importorskip("zarr")
    from napari_clipdenoise.napari_functions import denoise_image

    values = rng.random((2, 48, 48), dtype=np.float32)
    viewer.add_image(da.from_array(values, chunks=(1, 48, 48)), name="big", scale=(3.0, 1.0, 1.0))
    widget = make_widget(viewer, rgb_checkpoint)
    widget.large_layer_bytes = 0  # treat this small lazy layer as too big for memory
    widget.large_output.setText(str(tmp_path))
    widget.residual_check.setChecked(True)
    click_and_wait(qtbot, widget)
    assert "Done" in widget.status.text(), widget.status.text()
    result = viewer.layers["big_denoised"]
    assert isinstance(result.data, da.Array)  # opened lazily from the store
    assert result.metadata["clipdenoise"]["zarr_store"] == str(tmp_path / "big_denoised.zarr")
    assert (tmp_path / "big_denoised.zarr").is_dir()
    np.testing.assert_allclose(result.scale, (3.0, 1.0, 1.0))
    # the block engine gives the in-memory pipeline's result
    expected = denoise_image(
        values, model=str(rgb_checkpoint), axes="ZYX", tile_size=32, overlap=16, device="cpu", precision="fp32"
    )
    np.testing.assert_allclose(np.asarray(result.data), expected, atol=1e-5)
    assert isinstance(viewer.layers["big_residual"].data, da.Array)


def test_deleting_the_widget_mid_run_stops_the_job(viewer, qtbot, rgb_checkpoint, rng):
    viewer.add_image(rng.random((30, 64, 64), dtype=np.float32), name="long")
    widget = make_widget(viewer, rgb_checkpoint)
    worker = widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=WAIT_MS)
    cancel = widget._cancel
    viewer.window.remove_dock_widget(widget)
    widget.deleteLater()
    qtbot.waitUntil(cancel.is_set, timeout=5_000)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    assert "long_denoised" not in viewer.layers
