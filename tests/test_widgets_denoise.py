"""The Denoise dock widget in a real napari viewer (Xvfb), driven through its buttons."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_clipdenoise.widgets.denoise import DenoiseWidget  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def make_widget(viewer, checkpoint=None, *, tile=32, overlap=16):
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    if checkpoint is not None:
        widget.set_checkpoint(checkpoint)
    widget.tile_size.setValue(tile)
    widget.overlap.setValue(overlap)
    widget.device.setCurrentText("cpu")
    widget.precision.setCurrentText("fp32")
    return widget


def click_and_wait(qtbot, widget, button=None):
    (button or widget.run_button).click()
    assert widget.is_running
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)


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
    assert "Done" in widget.status.text()

    # running again replaces the result in place: same layer object, no new layers
    count = len(viewer.layers)
    viewer.layers.move(viewer.layers.index(result), 0)
    click_and_wait(qtbot, widget)
    assert len(viewer.layers) == count
    assert viewer.layers["cells_denoised"] is result
    assert viewer.layers.index(result) == 0


def test_residual_goes_under_the_result_hidden_and_averages_in_3d(viewer, qtbot, rgb_checkpoint, rng):
    """Problem 3: the residual layer must not hide the result (nor white out a 3D view)."""
    data = rng.random((2, 32, 32), dtype=np.float32)
    viewer.add_image(data, name="vol")
    widget = make_widget(viewer, rgb_checkpoint)
    widget.residual_check.setChecked(True)
    click_and_wait(qtbot, widget)
    result, residual = viewer.layers["vol_denoised"], viewer.layers["vol_residual"]
    assert viewer.layers.index(residual) == viewer.layers.index(result) - 1  # directly under it
    assert result.visible and not residual.visible
    assert str(residual.rendering) == "average"  # zero-mean noise projects to grey, not white
    np.testing.assert_array_equal(residual.data, data - result.data)
    assert "hidden" in widget.status.text()
    # the slow parts ran in the worker thread, not on the GUI thread
    assert residual.metadata["clipdenoise"]["residual"] == "input - denoised"


def test_work_runs_off_the_gui_thread_and_layers_arrive_one_per_event_loop_turn(
    viewer, qtbot, rgb_checkpoint, rng, monkeypatch
):
    """Problem 7: loading, denoising and the residual run in the worker; layers are added one at a time."""
    from qtpy.QtCore import QTimer

    from napari_clipdenoise.model import registry
    from napari_clipdenoise.widgets import _layers

    gui_thread = threading.get_ident()
    threads = {"load": set(), "residual": set()}
    load_model, residual = registry.load_model, _layers.residual

    def recording_load(*args, **kwargs):
        threads["load"].add(threading.get_ident())
        return load_model(*args, **kwargs)

    def recording_residual(*args, **kwargs):
        threads["residual"].add(threading.get_ident())
        return residual(*args, **kwargs)

    monkeypatch.setattr(registry, "load_model", recording_load)
    monkeypatch.setattr(_layers, "residual", recording_residual)
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = make_widget(viewer, rgb_checkpoint)
    widget.residual_check.setChecked(True)

    turns = []  # event-loop turns, counted by a 0 ms timer
    inserted_at = []
    ticker = QTimer()
    ticker.setInterval(0)
    ticker.timeout.connect(lambda: turns.append(1))
    viewer.layers.events.inserted.connect(lambda event: inserted_at.append(len(turns)))
    ticker.start()
    try:
        click_and_wait(qtbot, widget)
    finally:
        ticker.stop()
    assert threads["load"] and gui_thread not in threads["load"]
    assert threads["residual"] and gui_thread not in threads["residual"]
    assert len(inserted_at) == 2 and inserted_at[1] > inserted_at[0]  # the event loop ran in between


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


def test_preview_of_a_stack_plane_then_full_run_removes_the_previews(viewer, qtbot, rgb_checkpoint, rng):
    data = rng.random((3, 32, 32), dtype=np.float32)
    layer = viewer.add_image(data, name="stack", scale=(2.0, 0.5, 0.5), translate=(1.0, 0.0, 0.0))
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.axes_edit.text() == "ZYX"
    viewer.reset_view()
    viewer.dims.set_current_step(0, 2)  # third plane
    widget.residual_check.setChecked(True)
    click_and_wait(qtbot, widget, widget.preview_button)
    preview = viewer.layers["stack_denoised_preview"]
    assert preview.data.shape == (1, 32, 32)  # the whole plane is on screen after reset_view
    assert viewer.layers["stack_residual_preview"].data.shape == (1, 32, 32)
    np.testing.assert_allclose(preview.translate, (1.0 + 2 * 2.0, 0.0, 0.0))
    assert preview.metadata["clipdenoise"]["region"] == {"0": 2}
    assert "stack_denoised" not in viewer.layers
    preview_plane = np.array(preview.data[0])

    click_and_wait(qtbot, widget)
    result = viewer.layers["stack_denoised"]
    assert result.data.shape == data.shape and result.data.dtype == np.float32
    np.testing.assert_allclose(result.scale, layer.scale)
    np.testing.assert_allclose(result.translate, layer.translate)
    np.testing.assert_allclose(preview_plane, result.data[2], atol=1e-5)  # the preview is that plane's result
    # problem 9: the full run supersedes the previews, which are removed
    assert "stack_denoised_preview" not in viewer.layers and "stack_residual_preview" not in viewer.layers
    assert viewer.layers["stack_residual"].data.shape == data.shape


def test_preview_of_the_visible_region_of_a_2d_image(viewer, qtbot, rgb_checkpoint, rng):
    data = rng.random((96, 96), dtype=np.float32)
    layer = viewer.add_image(data, name="slide", scale=(0.5, 0.5))
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.preview_button.isEnabled()  # 2D images have a preview too (the part on screen)
    viewer.reset_view()
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (12.0, 12.0)  # world units: pixel (24, 24)
    camera.zoom = camera.zoom * 4
    click_and_wait(qtbot, widget, widget.preview_button)
    preview = viewer.layers["slide_denoised_preview"]
    height, width = preview.data.shape
    assert 16 <= height < 96 and 16 <= width < 96
    region = preview.metadata["clipdenoise"]["region"]
    start_y, start_x = region.get("0", 0), region.get("1", 0)
    np.testing.assert_allclose(preview.translate, (start_y * 0.5, start_x * 0.5))
    # the region covers the camera's centre, and it is what the full image's run gives there (tiles aside)
    assert start_y <= 24 < start_y + height and start_x <= 24 < start_x + width
    assert layer.data.shape == (96, 96)


def test_preview_is_disabled_in_3d_view(viewer, qtbot, rgb_checkpoint, rng):
    """Problem 9: in 3D no plane is on screen, so Preview says why it cannot run."""
    viewer.add_image(rng.random((4, 32, 32), dtype=np.float32), name="vol")
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.preview_button.isEnabled()
    viewer.dims.ndisplay = 3
    assert not widget.preview_button.isEnabled()
    assert "3D" in widget.preview_button.toolTip()
    widget.run(preview=True)  # called directly: refused with the reason
    assert not widget.is_running and "2D" in widget.status.text()
    viewer.dims.ndisplay = 2
    assert widget.preview_button.isEnabled()


def test_dask_backed_layer(viewer, qtbot, rgb_checkpoint, rng):
    da = pytest.importorskip("dask.array")
    data = da.from_array(rng.random((2, 32, 32), dtype=np.float32), chunks=(1, 32, 32))
    viewer.add_image(data, name="lazy")
    widget = make_widget(viewer, rgb_checkpoint)
    click_and_wait(qtbot, widget)
    assert viewer.layers["lazy_denoised"].data.shape == (2, 32, 32)


def test_invalid_axes_disable_denoise(viewer, qtbot, rgb_checkpoint, rng):
    """Problem 9: while the axes field is invalid, Denoise cannot be clicked (and says why)."""
    viewer.add_image(rng.random((2, 32, 32), dtype=np.float32), name="tzyx")
    widget = make_widget(viewer, rgb_checkpoint)
    assert widget.run_button.isEnabled()
    widget.axes_edit.setText("YX")
    widget.axes_edit.textEdited.emit("YX")
    assert "3 dimensions" in widget.axes_note.text() or "letters" in widget.axes_note.text()
    assert not widget.run_button.isEnabled() and not widget.preview_button.isEnabled()
    assert "axes" in widget.run_button.toolTip().lower()
    widget.axes_edit.setText("CYX")  # 2 channels, denoised one by one
    widget.axes_edit.textEdited.emit("CYX")
    assert "2 channels" in widget.axes_note.text()
    assert widget.run_button.isEnabled()
    click_and_wait(qtbot, widget)
    assert viewer.layers["tzyx_denoised"].metadata["clipdenoise"]["settings"]["axes"] == "CYX"


def test_cancel_mid_run_adds_nothing(viewer, qtbot, rgb_checkpoint, rng):
    viewer.add_image(rng.random((40, 64, 64), dtype=np.float32), name="long")
    widget = make_widget(viewer, rgb_checkpoint)
    layers_before = [layer.name for layer in viewer.layers]
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.progress_bar.maximum() > 0 and widget.progress_bar.value() >= 1, timeout=WAIT_MS)
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert [layer.name for layer in viewer.layers] == layers_before
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_bad_checkpoint_is_reported_and_taken_off_the_list(viewer, qtbot, rgb_checkpoint, rng, tmp_path, monkeypatch):
    """Problem 9: a checkpoint that fails to load does not stay in the model list."""
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda message: shown.append(message))
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = make_widget(viewer, bad)
    assert str(bad) in widget.model_combo.sources()
    click_and_wait(qtbot, widget)
    assert len(shown) == 1 and "broken.safetensors" in shown[0]
    assert "img_denoised" not in viewer.layers
    assert str(bad) not in widget.model_combo.sources()
    for _ in range(2):  # a second bad file does not pile up either
        widget.set_checkpoint(bad)
        click_and_wait(qtbot, widget)
    assert widget.model_combo.sources().count(str(bad)) == 0
    widget.set_checkpoint(rgb_checkpoint)
    click_and_wait(qtbot, widget)
    assert viewer.layers["img_denoised"].data.shape == (32, 32)


def test_no_model_state_is_two_lines_with_buttons_and_denoise_disabled(viewer, qtbot, rng):
    """Problem 5: no model is not a dead end: a link, buttons, and no clickable Denoise that fails."""
    from napari_clipdenoise.model.registry import AUTHORS_RELEASE

    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = make_widget(viewer)
    assert widget.model_combo.source() == "idf"  # the bundled model is the working default
    widget.model_combo.set_source("gaussian15")  # the paper's model, not installed here
    state = widget.model_state
    assert state.showing_missing
    assert widget.model_combo.currentText() == "gaussian15 (missing)"
    assert "not installed" in state.message.toolTip() or "not installed" in state.message.text()
    text = state.message.text()
    assert f'href="{AUTHORS_RELEASE}"' in text and state.message.openExternalLinks()
    assert "clipdenoise models import" in state.message.toolTip()  # the CLI way, in the tooltip
    assert state.install_button.isVisibleTo(widget) and state.load_button.isVisibleTo(widget)
    # two lines: the message, then one row of buttons
    assert state.message.geometry().bottom() <= state.install_button.geometry().top()
    assert state.install_button.geometry().top() == state.load_button.geometry().top()
    assert not widget.run_button.isEnabled() and not widget.preview_button.isEnabled()
    assert "model" in widget.run_button.toolTip().lower()
    widget.run()
    assert not widget.is_running and "install or load a model" in widget.status.text()


def test_install_checkpoint_validates_installs_and_selects(viewer, qtbot, rgb_checkpoint, rng, tmp_path, monkeypatch):
    from napari_clipdenoise.model.registry import installed_path
    from napari_clipdenoise.widgets import denoise as denoise_module

    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = make_widget(viewer)
    widget.model_combo.set_source("gaussian15")
    monkeypatch.setattr(denoise_module.QFileDialog, "getOpenFileName", lambda *a, **k: (str(rgb_checkpoint), ""))
    asked = []

    def get_text(parent, title, label, text=""):
        asked.append(text)
        return text, True

    monkeypatch.setattr(denoise_module.QInputDialog, "getText", get_text)
    widget.model_state.install_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert asked == ["gaussian15"]  # the missing registry model is the suggested name
    assert installed_path("gaussian15").is_file()
    assert widget.model_combo.source() == "gaussian15" and widget.model_combo.currentText() == "gaussian15"
    assert not widget.model_state.showing_missing and widget.run_button.isEnabled()
    assert "Installed 'gaussian15'" in widget.status.text()

    # a file that is no checkpoint is refused with the reason, and nothing is installed
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"junk")
    monkeypatch.setattr(denoise_module.QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    monkeypatch.setattr(denoise_module.QInputDialog, "getText", lambda *a, **k: ("junk", True))
    widget.model_combo.install_requested.emit()  # the "Install checkpoint…" entry of the model list
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert not installed_path("junk").exists()
    assert "Not installed" in widget.status.text() and "junk.pth" in widget.status.text()
    assert widget.model_combo.source() == "gaussian15"


def test_load_checkpoint_button_and_entry_use_a_file_dialog(viewer, qtbot, rgb_checkpoint, monkeypatch):
    from napari_clipdenoise.widgets import _model_combo

    widget = make_widget(viewer)
    combo = widget.model_combo
    before = combo.source()
    load_index = combo.findText(_model_combo.LOAD_CHECKPOINT)
    assert load_index >= 0 and combo.findText(_model_combo.INSTALL_CHECKPOINT) >= 0
    monkeypatch.setattr(_model_combo.QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    combo.setCurrentIndex(load_index)
    combo.activated.emit(load_index)
    assert combo.source() == before  # dismissed: the previous model stays selected
    monkeypatch.setattr(_model_combo.QFileDialog, "getOpenFileName", lambda *a, **k: (str(rgb_checkpoint), ""))
    widget.model_state.load_button.click()  # the no-model state's button
    assert combo.source() == str(rgb_checkpoint)
    assert combo.currentText() == rgb_checkpoint.name
    assert not widget.model_state.showing_missing


def test_a_download_button_can_be_added_to_the_no_model_row(viewer):
    from qtpy.QtWidgets import QPushButton

    widget = make_widget(viewer)
    widget.model_combo.set_source("gaussian15")
    download = QPushButton("Another action")
    widget.add_model_action(download)
    assert download.parent() is widget.model_state.missing
    assert download.isVisibleTo(widget)
    assert widget.download_button.isVisibleTo(widget)  # gaussian15 has a release to download from


def test_model_description_and_demonstration_label(viewer, qtbot, tmp_path):
    """Problem 9: the model's description (what it was trained on) is shown; a demonstration model says so."""
    from napari_clipdenoise.model.testing import write_project_checkpoint

    widget = make_widget(viewer)
    widget.model_combo.set_source("ldct")
    assert widget.model_state.showing_missing  # not installed here
    demo = tmp_path / "demo.safetensors"
    write_project_checkpoint(
        demo, 3, seed=0, noise="gaussian sigma 15.0/255 (online)", random_encoder=True, random_weights=False
    )
    widget.set_checkpoint(demo)
    info = widget.model_state.info
    assert info.isVisibleTo(widget)
    assert "Trained on gaussian sigma 15.0/255" in info.text()
    assert "demonstration model, not the paper's" in info.text()


def test_progress_is_honest_for_one_tile_and_names_each_stage(viewer, qtbot, rgb_checkpoint, rng, monkeypatch):
    """Problem 6: no "0 / 1 tiles" for a one-tile image, a loading-model stage, no stale activity text, no idle 0%."""
    import napari.utils

    descriptions = []
    original = napari.utils.progress.set_description

    def recording(self, desc):
        descriptions.append(desc)
        return original(self, desc)

    monkeypatch.setattr(napari.utils.progress, "set_description", recording)
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="small")
    widget = make_widget(viewer, rgb_checkpoint, tile=64)
    assert not widget.progress_bar.isVisibleTo(widget)  # idle: no bar, no "0%"
    texts, formats = [], []
    original_status = widget._set_status

    def record_status(text, *, error=False):
        texts.append(text)
        if widget.progress_bar.maximum() > 0:
            formats.append(widget.progress_bar.text())
        original_status(text, error=error)

    monkeypatch.setattr(widget, "_set_status", record_status)
    click_and_wait(qtbot, widget)
    assert any(text.startswith("loading model") for text in texts)
    assert any("one tile" in text for text in texts)
    assert not any("0 / 1" in text for text in texts + formats)
    stages = [d.split(": ", 1)[1] for d in descriptions if ": " in d]
    assert "loading model" in stages and stages[-1] != "loading model"  # the activity entry moved on
    assert not widget.progress_bar.isVisibleTo(widget)  # idle again
    assert "Done" in widget.status.text()
    # the second run reuses the loaded model: no loading stage
    texts.clear()
    click_and_wait(qtbot, widget)
    assert not any(text.startswith("loading model") for text in texts)


def test_status_forgets_a_deleted_result(viewer, qtbot, rgb_checkpoint, rng):
    """Problem 9: the status line does not keep naming a result that was deleted."""
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    widget = make_widget(viewer, rgb_checkpoint)
    click_and_wait(qtbot, widget)
    assert "img_denoised" in widget.status.text()
    viewer.layers.remove("img_denoised")
    assert widget.status.text() == "'img_denoised' was deleted."


def test_comparison_layers_are_not_offered_as_inputs(viewer, rng):
    """Problem 9: the comparison's output layers do not appear in the Denoise image list."""
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img")
    viewer.add_image(
        rng.random((32, 32), dtype=np.float32), name="σ=25 · tv", metadata={"clipdenoise_compare": {"method": "tv"}}
    )
    widget = make_widget(viewer)
    names = [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())]
    assert names == ["img"]


def test_fits_a_laptop_dock(viewer, qtbot):
    """Problem 4: the widget fits the dock napari gives it on a 1366 x 768 screen; nothing is cut or runs off."""
    window = viewer.window._qt_window
    window.resize(1366, 768)
    widget = make_widget(viewer)
    widget.model_combo.set_source("gaussian15")  # the no-model state, the widest content
    widget.advanced_toggle.setChecked(True)  # and the tallest
    window.show()
    qtbot.wait(50)
    assert widget.minimumSizeHint().width() <= 300
    assert widget.minimumSizeHint().width() <= widget.width()
    area = widget.scroll_area
    assert area.widget().minimumSizeHint().width() <= area.viewport().width()
    assert not area.horizontalScrollBar().isVisible()
    assert window.height() <= 768  # the window was not pushed taller than the screen


def test_denoise_several_selected_layers(viewer, qtbot, rgb_checkpoint, rng):
    a = viewer.add_image(rng.random((32, 32), dtype=np.float32), name="a")
    b = viewer.add_image(rng.random((2, 32, 32), dtype=np.float32), name="b")
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="c")
    widget = make_widget(viewer, rgb_checkpoint)
    viewer.layers.selection = {a, b}
    assert widget.selected_button.isVisibleTo(widget)
    assert widget.selected_button.text() == "Denoise the 2 selected layers"
    widget.selected_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert viewer.layers["a_denoised"].data.shape == (32, 32)
    assert viewer.layers["b_denoised"].data.shape == (2, 32, 32)
    assert viewer.layers["b_denoised"].metadata["clipdenoise"]["settings"]["axes"] == "ZYX"
    assert "c_denoised" not in viewer.layers
    assert "Denoised 2 of 2 layers" in widget.status.text()
    viewer.layers.selection = {a}
    assert not widget.selected_button.isVisibleTo(widget)


def test_before_after_side_by_side_and_flip(viewer, qtbot, rgb_checkpoint, rng):
    from napari_clipdenoise.widgets._view_session import grid_of

    other = viewer.add_image(rng.random((32, 32), dtype=np.float32), name="other")
    image = viewer.add_image(rng.random((32, 32), dtype=np.float32), name="img", scale=(2.0, 2.0))
    widget = make_widget(viewer, rgb_checkpoint)
    widget.layer_combo.set_layer("img")
    assert not widget.before_after.isVisibleTo(widget)  # nothing to compare yet
    click_and_wait(qtbot, widget)
    result = viewer.layers["img_denoised"]
    placed = tuple(result.translate)
    row = widget.before_after
    assert row.isVisibleTo(widget) and row.side_by_side.isEnabled()
    row.side_by_side.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)  # laid out one change per event-loop turn
    assert [layer.name for layer in viewer.layers if layer.visible] == ["img", "img_denoised"]
    assert not grid_of(viewer).enabled  # one view and one camera, not napari's grid of view boxes
    # the result sits to the right of the input, clear of it, on the same rows
    input_right = image.data_to_world((0, 31))[-1] + 1.0  # the right edge of the input's last column
    result_left = result.data_to_world((0, 0))[-1] - 1.0
    assert result_left > input_right and result.translate[-2] == image.translate[-2]
    assert row.names.isVisibleTo(widget) and row.names.text() == "left: img   ·   right: img_denoised"
    grid_of(viewer).enabled = True  # napari's own grid button ends it
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert not row.side_by_side.isChecked()
    assert other.visible and tuple(result.translate) == placed and not row.names.isVisibleTo(widget)
    grid_of(viewer).enabled = False
    row.flip.click()
    assert image.visible and not result.visible
    row.flip.click()
    assert result.visible


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


def test_the_tta_checkbox_gives_the_cores_test_time_augmentation(viewer, qtbot, rgb_checkpoint, rng, one_torch_thread):
    """Issue 14 point 4: the widget's checkbox runs denoise(..., tta=True), nothing else."""
    from napari_clipdenoise import denoise, load_model

    data = rng.random((40, 48), dtype=np.float32)
    viewer.add_image(data, name="img")
    widget = make_widget(viewer, rgb_checkpoint)
    widget.advanced_toggle.setChecked(True)
    widget.tta.setChecked(True)
    assert widget.settings().options.tta
    click_and_wait(qtbot, widget)
    expected = denoise(data, load_model(rgb_checkpoint), axes="YX", tile_size=32, overlap=16, device="cpu",
                       precision="fp32", tta=True)  # fmt: skip
    np.testing.assert_array_equal(viewer.layers["img_denoised"].data, expected)
    assert viewer.layers["img_denoised"].metadata["clipdenoise"]["settings"]["tta"] is True
