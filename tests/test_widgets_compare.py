"""The noise-level comparison widget in a real napari viewer: layers, grid, table, plot, numbers, CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_clipdenoise import metrics  # noqa: E402
from napari_clipdenoise.noise import add_noise  # noqa: E402
from napari_clipdenoise.widgets.compare import CompareWidget, grid_of, parse_levels  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture
def clean():
    from skimage import data, transform

    image = transform.resize(data.camera(), (64, 64), anti_aliasing=True)  # float64 in [0, 1]
    return image.astype(np.float32)


def make_widget(viewer, qtbot):
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.tile_size.setValue(64)
    widget.overlap.setValue(16)
    widget.device.setCurrentText("cpu")
    widget.precision.setCurrentText("fp32")
    return widget


def run_and_wait(qtbot, widget):
    widget.run_button.click()
    assert widget.is_running
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)


def compare_layers(viewer):
    return [layer for layer in viewer.layers if "clipdenoise_compare" in layer.metadata]


def test_two_methods_three_levels_numbers_table_plot_and_csv(
    make_napari_viewer, qtbot, rgb_checkpoint, clean, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean", scale=(0.5, 0.5))
    widget = make_widget(viewer, qtbot)
    model = widget.add_checkpoint(rgb_checkpoint)
    widget.set_methods([model, "tv"])
    widget.noise.setCurrentText("gaussian")
    widget.levels.setText("15, 25, 50")
    widget.seed.setValue(7)
    run_and_wait(qtbot, widget)
    assert "Done" in widget.status.text(), widget.status.text()

    # records (copied and exported): (noisy + 2 methods) x 3 levels, every score in full precision
    assert widget.table.headers == ["Method", "Noise", "Level", "PSNR (dB)", "SSIM", "Time (s)"]
    rows = widget.table.rows()
    assert len(rows) == 9
    assert {row[0] for row in rows} == {"noisy", "random_rgb", "tv"}

    # the numbers are the core metrics on the seeded inputs and on the layers' pixels
    for index, level in enumerate((15.0, 25.0, 50.0)):
        expected_noisy = add_noise(clean, "gaussian", level, rng=np.random.default_rng([7, index]))
        np.testing.assert_array_equal(viewer.layers[f"σ={level:g} · noisy"].data, expected_noisy)
        np.testing.assert_array_equal(viewer.layers[f"σ={level:g} · clean"].data, clean)  # the reference is shown
        for label in ("noisy", "random_rgb", "tv"):
            layer = viewer.layers[f"σ={level:g} · {label}"]
            row = next(r for r in rows if r[0] == label and r[2] == level)
            assert row[3] == metrics.psnr(clean, layer.data, data_range=1.0)
            assert row[4] == metrics.ssim(clean, layer.data, data_range=1.0)
            np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    noisy50 = next(r for r in rows if r[0] == "noisy" and r[2] == 50.0)[3]
    tv50 = next(r for r in rows if r[0] == "tv" and r[2] == 50.0)[3]
    assert tv50 > noisy50  # tv with the known sigma really denoises

    # the table shows one score as methods x levels; bold marks the best method per level
    assert widget.table.column_headers() == ["PSNR (dB)", "σ=15", "σ=25", "σ=50"]
    shown = widget.table.displayed()
    assert [r[0] for r in shown] == ["noisy", "random_rgb", "tv"]
    assert shown[2][3] == tv50
    best_row = max((1, 2), key=lambda r: shown[r][3])
    assert widget.table.item(best_row, 3).font().bold()
    widget.metric.setCurrentIndex(widget.metric.findData("ssim"))
    assert widget.table.column_headers()[0] == "SSIM"
    assert widget.table.displayed()[2][3] == next(r for r in rows if r[0] == "tv" and r[2] == 50.0)[4]
    assert widget.table.verticalScrollBar().maximum() == 0  # every row visible

    # plot: one PSNR-vs-level line per method (and the noisy input)
    lines = widget.plot.lines()
    assert set(lines) == {"noisy input", "random_rgb", "tv"}
    assert lines["tv"] == (
        [15.0, 25.0, 50.0],
        [r[3] for r in sorted((r for r in rows if r[0] == "tv"), key=lambda r: r[2])],
    )

    text = widget.table.copy_to_clipboard()
    assert text.splitlines()[0].split("\t") == widget.table.headers
    path = tmp_path / "comparison.csv"
    widget.table.export_csv(path)
    with open(path, newline="") as handle:
        exported = list(csv.reader(handle))
    assert exported[0] == widget.table.headers and len(exported) == 10
    assert float(exported[1][3]) == rows[0][3]

    # same settings, same numbers; the previous comparison's layers are replaced, not duplicated
    count = len(viewer.layers)
    run_and_wait(qtbot, widget)
    assert [r[:5] for r in widget.table.rows()] == [r[:5] for r in rows]
    assert len(viewer.layers) == count


def test_grid_is_readable_levels_by_methods_named_and_reset(make_napari_viewer, qtbot, clean):
    """Problem 1: the grid's rows are levels, its columns clean/noisy/methods; cells named, view reset."""
    from qtpy.QtGui import QFont, QFontMetrics

    from napari_clipdenoise.widgets._grid import CELL_FONT_SIZE

    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1366, 768)
    viewer.window._qt_window.show()
    user = viewer.add_image(clean, name="clean")
    widget = make_widget(viewer, qtbot)
    widget.set_methods(["tv", "wavelet"])
    widget.levels.setText("15, 50")
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom = camera.zoom * 8  # a zoomed-in crop, as a user may have left it
    zoomed = camera.zoom
    run_and_wait(qtbot, widget)

    grid = grid_of(viewer)
    assert widget.grid_button.isChecked() and grid.enabled  # the comparison opens in grid view
    columns = ("clean", "noisy", "tv", "wavelet")
    by_level = [[f"σ={level} · {column}" for column in columns] for level in (15, 50)]
    shape = tuple(grid.shape)
    if shape == (2, 4):  # one row per level
        expected = [name for row in by_level for name in row]
    else:  # one column per level (taller than wide canvases: larger cells)
        assert shape == (4, 2)
        expected = [name for column in zip(*by_level, strict=True) for name in column]
    visible = [layer.name for layer in viewer.layers if layer.visible]
    assert visible == expected  # row by row; the user's own layer is not an unlabelled cell
    assert not user.visible
    assert all(viewer.layers[name].name_overlay.visible for name in expected)
    assert camera.zoom < zoomed  # the view was reset to show whole cells
    # each name fits its cell (vispy draws text about 1.2x wider than Qt's metrics), so the labels are not cut
    cell_height, cell_width = viewer.canvas.viewbox_size(viewer.layers)
    font = QFont()
    font.setPointSizeF(CELL_FONT_SIZE)
    widest = max(QFontMetrics(font).horizontalAdvance(name) for name in expected)
    assert widest * 1.25 < cell_width
    # the names differ at their start, where the layer list shows them when it elides
    assert len({name[:12] for name in expected}) == len(expected)

    # grid off: everything back as it was, and no name overlays piled up in one corner
    widget.grid_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert not grid.enabled
    assert user.visible
    assert not any(layer.name_overlay.visible for layer in viewer.layers)
    widget.grid_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert grid.enabled and not user.visible


def test_reference_mode_preselects_the_clean_layer_and_warns_about_a_noisy_one(make_napari_viewer, qtbot):
    """Problem 2: the clean layer is preselected (not the active noisy one); a noisy reference is flagged."""
    from napari_clipdenoise.sample_data import noisy_photograph

    viewer = make_napari_viewer()
    for data, kwargs, _ in noisy_photograph():
        viewer.add_image(data[::4, ::4], **kwargs)
    assert viewer.layers.selection.active.name == "camera_noisy"
    widget = make_widget(viewer, qtbot)
    assert widget.layer_combo.currentText() == "camera_clean"
    assert not widget.reference_note.isVisibleTo(widget)

    widget.layer_combo.set_layer("camera_noisy")
    note = widget.reference_note
    assert note.isVisibleTo(widget) and "looks noisy" in note.text() and "σ ≈" in note.text()
    widget.set_methods(["tv"])
    widget.levels.setText("25")
    run_and_wait(qtbot, widget)
    assert widget.summary.isVisibleTo(widget) and "looks noisy" in widget.summary.text()
    assert "reference looks noisy" in widget.status.text()

    widget.mode.setCurrentIndex(1)  # real noisy data: a noisy image is what it wants
    assert not widget.reference_note.isVisibleTo(widget)


def test_without_reference_shows_results_residuals_and_noise_estimate(make_napari_viewer, qtbot, clean):
    viewer = make_napari_viewer()
    noisy = add_noise(clean, "gaussian", 25.0, rng=0)
    viewer.add_image(noisy, name="noisy")
    widget = make_widget(viewer, qtbot)
    widget.mode.setCurrentIndex(1)
    assert not widget.levels.isVisibleTo(widget)
    widget.set_methods(["wavelet", "tv"])
    run_and_wait(qtbot, widget)
    residual = viewer.layers["tv · residual"]
    np.testing.assert_allclose(residual.data, noisy - viewer.layers["tv"].data, atol=1e-6)
    grid = grid_of(viewer)
    assert tuple(grid.shape) == (1, 3)
    assert [layer.name for layer in viewer.layers if layer.visible] == ["noisy input", "tv", "wavelet"]
    widget.residuals_button.click()  # the grid shows what each method removed
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    shown = [layer.name for layer in viewer.layers if layer.visible]
    assert shown == ["noisy input", "tv · residual", "wavelet · residual"]
    assert widget.table.headers[:2] == ["Method", "Residual σ (0-255)"]
    estimate = float(widget.summary.text().split(":")[1].split("(")[0])
    assert 20 < estimate < 30  # the true sigma is 25


def test_a_users_layer_with_a_comparison_name_is_never_overwritten(make_napari_viewer, qtbot, clean):
    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean")
    mine = viewer.add_image(np.zeros((8, 8), np.float32), name="tv")
    widget = make_widget(viewer, qtbot)
    widget.mode.setCurrentIndex(1)
    widget.layer_combo.set_layer("clean")
    widget.set_methods(["tv"])
    run_and_wait(qtbot, widget)
    assert viewer.layers["tv"] is mine and mine.data.shape == (8, 8)
    assert viewer.layers["tv [compare]"].data.shape == clean.shape


def test_layers_are_added_one_per_event_loop_turn(make_napari_viewer, qtbot, clean):
    """Problem 7: nine-plus result layers are not added in one frozen burst."""
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean")
    widget = make_widget(viewer, qtbot)
    widget.set_methods(["tv", "wavelet"])
    turns, inserted_at = [], []
    ticker = QTimer()
    ticker.setInterval(0)
    ticker.timeout.connect(lambda: turns.append(1))
    viewer.layers.events.inserted.connect(lambda event: inserted_at.append(len(turns)))
    ticker.start()
    try:
        run_and_wait(qtbot, widget)
    finally:
        ticker.stop()
    assert len(inserted_at) == 12
    assert all(b > a for a, b in zip(inserted_at, inserted_at[1:], strict=False))


def test_fits_a_laptop_screen(make_napari_viewer, qtbot, clean):
    """Problem 4: on 1366 x 768 the widget scrolls instead of pushing the window (and its plot) off screen."""
    viewer = make_napari_viewer()
    window = viewer.window._qt_window
    window.resize(1366, 768)
    viewer.add_image(clean, name="clean")
    widget = make_widget(viewer, qtbot)
    widget.advanced_toggle.setChecked(True)
    window.show()
    qtbot.wait(50)
    assert window.height() <= 768
    area = widget.scroll_area
    area.ensureWidgetVisible(widget.plot)
    qtbot.wait(10)
    top_left = widget.plot.mapTo(area.viewport(), widget.plot.rect().topLeft())
    assert 0 <= top_left.y() < area.viewport().height()  # the plot can be scrolled into view
    assert not area.horizontalScrollBar().isVisible()


def test_method_list_follows_the_registry_bundled_and_installed_models(make_napari_viewer, rgb_checkpoint, monkeypatch):
    """A bundled or newly installed model appears in both widgets without widget changes."""
    from napari_clipdenoise import install_model
    from napari_clipdenoise.model import registry
    from napari_clipdenoise.widgets.denoise import DenoiseWidget

    monkeypatch.setitem(
        registry.BUNDLED, "peer", registry.BundledModel("peer", rgb_checkpoint, "a bundled peer model (test)")
    )
    install_model(rgb_checkpoint, "my_model")
    viewer = make_napari_viewer()
    widget = CompareWidget(viewer)
    methods = widget.method_names()
    for name in ("gaussian15", "srgb", "ldct", "peer", "my_model"):
        assert f"model:{name}" in methods
    widget.set_methods(["model:peer", "model:my_model"])  # both loadable: checkable
    with pytest.raises(ValueError, match="unknown method"):
        widget.set_methods(["model:gaussian15"])  # listed, not installed
    denoise = DenoiseWidget(viewer)
    assert {"peer", "my_model", "gaussian15"} <= set(denoise.model_combo.sources())
    denoise.model_combo.set_source("peer")
    assert not denoise.model_state.showing_missing
    assert "bundled peer model" in denoise.model_state.info.text()


def test_cancel_adds_nothing_and_bad_levels_are_reported(make_napari_viewer, qtbot, rgb_checkpoint, clean, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda message: shown.append(message))
    viewer = make_napari_viewer()
    viewer.add_image(np.tile(clean, (2, 2)), name="clean")  # 128 px: 9 tiles of 64 per level
    widget = make_widget(viewer, qtbot)
    widget.levels.setText("15, banana")
    widget.run_button.click()
    assert not widget.is_running and "banana" in widget.status.text() and "banana" in shown[0]
    viewer.add_image(np.zeros((2, 32, 32), np.float32), name="two_channels", axis_labels=("c", "y", "x"))
    widget.layer_combo.set_layer("two_channels")
    widget.run_button.click()
    assert not widget.is_running and "channel axis" in shown[-1]
    widget.layer_combo.set_layer("clean")

    widget.set_methods([widget.add_checkpoint(rgb_checkpoint)])
    widget.levels.setText("10, 20, 30, 40, 50")
    widget.tile_size.setValue(32)
    layers_before = len(viewer.layers)
    widget.run_button.click()
    qtbot.waitUntil(lambda: "tile" in widget.status.text(), timeout=WAIT_MS)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert len(viewer.layers) == layers_before
    assert "Cancelled" in widget.status.text()


def test_parse_levels():
    assert parse_levels("15, 25 50") == (15.0, 25.0, 50.0)
    with pytest.raises(ValueError, match="not a number"):
        parse_levels("15, x")
    with pytest.raises(ValueError, match="at least one"):
        parse_levels(" , ")
    with pytest.raises(ValueError, match="once"):
        parse_levels("15, 15")


def test_refresh_lists_a_newly_installed_model_and_keeps_choices(make_napari_viewer, rgb_checkpoint, tmp_path):
    from napari_clipdenoise import install_model

    viewer = make_napari_viewer()
    widget = CompareWidget(viewer)
    model = widget.add_checkpoint(rgb_checkpoint)
    widget.set_methods([model, "tv"])
    with pytest.raises(ValueError, match="unknown method"):
        widget.set_methods(["model:gaussian15"])  # listed but not installed: not checkable
    install_model(rgb_checkpoint, "gaussian15")
    widget.refresh_methods_button.click()
    assert set(widget.selected_methods()) >= {model, "tv"}
    widget.set_methods(["model:gaussian15", "tv"])  # now installed: can be ticked
    assert widget.selected_methods() == ("model:gaussian15", "tv")
