"""CT in napari: the reader contribution in a real viewer, the Denoise widget's units, planes, scale and windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from ct_data import write_nifti, write_series  # noqa: E402

from napari_clipdenoise.widgets._ct_controls import CT_WINDOWS, window_limits  # noqa: E402
from napari_clipdenoise.widgets.denoise import DenoiseWidget  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def ct_checkpoint(tmp_path_factory):
    """A 1-channel random-weight checkpoint whose metadata says it was trained on CT in HU."""
    from napari_clipdenoise.model.registry import CT_SCALE
    from napari_clipdenoise.model.testing import write_project_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "ct_model.safetensors"
    write_project_checkpoint(path, 1, seed=2, input_scale=CT_SCALE.as_record())
    return path


@pytest.fixture
def plugin(npe2pm):
    with npe2pm.tmp_plugin(manifest=str(MANIFEST)) as registered:
        yield registered


def test_reader_opens_a_dicom_folder_and_a_nifti_file_on_their_geometry(make_napari_viewer, plugin, tmp_path):
    made = write_series(tmp_path / "series", 4, seed=5)
    hu, affine = write_nifti(tmp_path / "head.nii.gz")
    (tmp_path / "notes.txt").write_text("not an image")
    from napari_clipdenoise.readers import get_reader

    assert get_reader(str(tmp_path / "notes.txt")) is None and get_reader(str(tmp_path)) is None
    files = [str(tmp_path / "series" / name) for name in made["names"][:2]]
    [(data, kwargs, kind)] = get_reader(files)(files)  # a list of files of one series
    assert kind == "image" and data.shape == (2, 128, 128) and kwargs["scale"][0] == made["spacing"][0]

    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "series"), plugin=plugin.name)  # what dropping the folder does
    assert layer.name == "series" and layer.data.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(layer.data), made["hu"])
    np.testing.assert_allclose(layer.scale, made["spacing"])
    first = made["names"][0]
    import pydicom

    position = [float(v) for v in pydicom.dcmread(tmp_path / "series" / first).ImagePositionPatient]
    np.testing.assert_allclose(layer.translate, (position[2], position[1], position[0]))
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert layer.metadata["clipdenoise_source"]["units"] == "HU"
    assert tuple(layer.contrast_limits) == window_limits("soft tissue")

    [volume] = viewer.open(str(tmp_path / "head.nii.gz"), plugin=plugin.name)
    assert volume.name == "head" and volume.data.shape == hu.shape
    np.testing.assert_allclose(np.asarray(volume.data), hu)
    np.testing.assert_allclose(volume.scale, (2.5, 0.8, 0.7))
    np.testing.assert_allclose(volume.translate, (30.0, -20.0, 12.0))
    np.testing.assert_allclose(volume.metadata["clipdenoise_source"]["affine"], affine)


def make_widget(viewer, checkpoint):
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_checkpoint(checkpoint)
    widget.tile_size.setValue(0)  # whole planes: one pass each
    widget.device.setCurrentText("cpu")
    widget.precision.setCurrentText("fp32")
    return widget


def test_widget_feeds_a_ct_model_its_scale_keeps_hu_and_sets_windows(
    make_napari_viewer, plugin, qtbot, tmp_path, ct_checkpoint
):
    write_series(tmp_path / "series", 2, seed=6)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(tmp_path / "series"), plugin=plugin.name)
    widget = make_widget(viewer, ct_checkpoint)
    controls = widget.ct_controls
    assert "HU [-1024, 3072]" in controls.scale_label.text()
    assert controls.units.currentText() == "from the layer (HU)"
    assert controls.range_label.text() == "Range: [-1024, 3072] (model input scale (HU))"
    assert not controls.warning_label.isVisibleTo(widget)
    assert widget.settings().options.units == "HU"
    assert controls.window_row.isVisibleTo(widget)  # HU in play: the CT windows are offered

    controls.units.setCurrentIndex(controls.units.findData(None))  # not declared: percentile rule + a warning
    assert "percentiles" in controls.range_label.text()
    assert "look like HU" in controls.warning_label.text() and controls.warning_label.isVisibleTo(widget)
    controls.units.setCurrentIndex(0)

    assert controls.apply_window("lung") == []  # no result yet: nothing changed, the status says so
    assert "No result yet" in widget.status.text()
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    result = viewer.layers["series_denoised"]
    assert result.data.dtype == np.float32 and result.data.shape == layer.data.shape  # still HU floats
    record = result.metadata["clipdenoise"]
    assert record["intensity_ranges"][0]["low"] == -1024.0 and record["settings"]["units"] == "HU"
    assert controls.range_label.text().startswith("Used: [-1024, 3072]")
    for name in CT_WINDOWS:
        controls.window_buttons[name].click()
        assert tuple(result.contrast_limits) == window_limits(name)
    assert window_limits("soft tissue") == (-160.0, 240.0)
    assert window_limits("lung") == (-1350.0, 150.0)
    assert window_limits("bone") == (-500.0, 1500.0)


def test_widget_warns_for_a_ct_model_on_a_photograph_and_runs_ortho(make_napari_viewer, qtbot, ct_checkpoint, rng):
    viewer = make_napari_viewer()
    viewer.add_image(rng.integers(0, 255, (24, 24, 3)).astype(np.uint8), name="photo", rgb=True)
    widget = make_widget(viewer, ct_checkpoint)
    controls = widget.ct_controls
    assert "RGB image" in controls.warning_label.text() and controls.warning_label.isVisibleTo(widget)

    stack = viewer.add_image(rng.normal(-300, 200, (3, 16, 16)).astype(np.float32), name="stack")
    widget.layer_combo.set_layer(stack)
    assert widget.axes_edit.text() == "ZYX"
    controls.planes.setCurrentText("ortho")
    controls.units.setCurrentIndex(controls.units.findData("HU"))
    assert widget.settings().options.planes == "ortho" and widget.settings().options.units == "HU"
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    result = viewer.layers["stack_denoised"]
    assert result.data.shape == (3, 16, 16) and result.metadata["clipdenoise"]["settings"]["planes"] == "ortho"
    widget.preview_button.click()  # one plane: previewed in XY whatever Planes says
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    preview = viewer.layers["stack_denoised_preview"]
    assert preview.data.shape == (1, 16, 16) and preview.metadata["clipdenoise"]["settings"]["planes"] == "xy"


def test_ct_windows_are_not_offered_for_a_photograph_and_a_photo_model(make_napari_viewer, rgb_checkpoint):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), name="photo", rgb=True)
    widget = make_widget(viewer, rgb_checkpoint)
    controls = widget.ct_controls
    assert not controls.window_row.isVisibleTo(widget) and not controls.window_title.isVisibleTo(widget)
    controls.units.setCurrentIndex(controls.units.findData("HU"))  # the user says the values are HU
    assert controls.window_row.isVisibleTo(widget)
