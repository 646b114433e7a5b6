"""The Adapt dock widget in a real napari viewer (Xvfb): train, watch, cancel, and use the result elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_adapt import fluorescence_stack  # noqa: E402

from napari_clipdenoise.widgets.adapt import WHOLE_LAYERS, AdaptWidget  # noqa: E402

WAIT_MS = 120_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def make_widget(viewer, checkpoint, *, name="my_scope", steps=4):
    widget = AdaptWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_combo.add_checkpoint(checkpoint)
    widget.name_edit.setText(name)
    widget.steps.setValue(steps)
    widget.crop_size.setValue(32)
    return widget


def start_and_wait(qtbot, widget):
    worker = widget.start()
    assert worker is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def test_adapt_installs_a_model_the_denoise_and_compare_widgets_list(viewer, qtbot, gray_checkpoint, one_torch_thread):
    from napari_clipdenoise.widgets.compare import CompareWidget
    from napari_clipdenoise.widgets.denoise import DenoiseWidget

    stack = fluorescence_stack()
    viewer.add_image(stack, name="cells")
    denoise = DenoiseWidget(viewer)
    compare = CompareWidget(viewer)
    viewer.window.add_dock_widget(denoise)
    viewer.window.add_dock_widget(compare)
    assert denoise.model_combo.findData("my_scope") < 0
    widget = make_widget(viewer, gray_checkpoint)
    assert widget.selected_layer_names() == ["cells"]
    start_and_wait(qtbot, widget)

    assert "Installed 'my_scope'" in widget.status.text(), widget.status.text()
    lines = widget.plot.lines()
    assert set(lines) == {"training", "held-out"}
    assert lines["held-out"][0][0] == 0  # the base model's own loss is the first point
    record = widget.result.metadata["adaptation"]
    assert record["data"]["images"][0]["shape"] == [3, 64, 64]
    # both model lists were refreshed without touching their buttons
    assert denoise.model_combo.findData("my_scope") >= 0
    methods = [compare.methods.item(i).data(256) for i in range(compare.methods.count())]  # 256 = UserRole
    assert "model:my_scope" in methods

    # the Denoise widget uses it and records its provenance on the result layer
    denoise.model_combo.set_source("my_scope")
    denoise.tile_size.setValue(0)
    denoise.device.setCurrentText("cpu")
    denoise.precision.setCurrentText("fp32")
    denoise.run_button.click()
    qtbot.waitUntil(lambda: not denoise.is_running, timeout=WAIT_MS)
    result = viewer.layers["cells_denoised"]
    assert result.data.shape == stack.shape
    assert result.metadata["clipdenoise"]["model"]["adapted_from"]["name"] == "random_gray"


def test_cancel_stops_the_run_and_installs_nothing(viewer, qtbot, gray_checkpoint, one_torch_thread):
    from napari_clipdenoise import installed_models

    viewer.add_image(fluorescence_stack(), name="cells")
    widget = make_widget(viewer, gray_checkpoint, steps=100_000)
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: len(widget._curve["step"]) >= 2, timeout=WAIT_MS)
    assert widget.cancel_button.isEnabled() and not widget.start_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    assert "Cancelled" in widget.status.text()
    assert "my_scope" not in installed_models()
    assert widget.start_button.isEnabled()


def test_a_shapes_region_cuts_the_training_data(viewer, qtbot, gray_checkpoint):
    viewer.add_image(fluorescence_stack(2, size=96), name="cells", scale=(1, 2, 2))
    # a rectangle in world coordinates covering data rows 8..55 and columns 16..63 (scale 2)
    viewer.add_shapes([np.array([[16, 32], [16, 126], [110, 126], [110, 32]])], shape_type="rectangle", name="roi")
    widget = make_widget(viewer, gray_checkpoint)
    widget.region.setCurrentText("roi")
    images, axes = widget.training_data()
    assert axes == ["ZYX"]
    assert images[0].shape == (2, 48, 48)
    widget.region.setCurrentText(WHOLE_LAYERS)
    assert widget.training_data()[0][0].shape == (2, 96, 96)


def test_problems_are_shown_before_anything_runs(viewer, qtbot, gray_checkpoint):
    viewer.add_image(np.zeros((20, 20), np.uint16) + np.arange(20, dtype=np.uint16), name="tiny")
    widget = make_widget(viewer, gray_checkpoint, name="")
    assert widget.start() is None
    assert "Name the adapted model" in widget.status.text()
    widget.name_edit.setText("gaussian15")
    assert widget.start() is None
    assert "published model" in widget.status.text()
    widget.name_edit.setText("ok_name")
    widget.set_layers([])
    assert widget.start() is None
    assert "tick at least one image layer" in widget.status.text()
    widget.set_layers(["tiny"])
    start_and_wait(qtbot, widget)  # the data are checked in the worker: the error comes back, the viewer stays usable
    assert "too small for 32 x 32 px crops" in widget.status.text()
    assert widget.start_button.isEnabled()


def test_the_comparison_montage_is_never_offered_as_training_data(viewer, gray_checkpoint):
    """A montage (images plus name strips) is a view, not data of the microscope."""
    viewer.add_image(np.zeros((32, 32), np.float32), name="cells")
    viewer.add_image(np.zeros((64, 96), np.float32), name="comparison", metadata={"clipdenoise_compare": {}})
    widget = make_widget(viewer, gray_checkpoint)
    listed = [widget.layers_list.item(i).text() for i in range(widget.layers_list.count())]
    assert listed == ["cells"]
