"""The noise-level comparison widget in a real napari viewer: montage, grid view, table, plot, numbers, CSV."""

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


def double_click(montage, name: str, *, strip: bool = False) -> None:
    """What napari does on a double-click at the middle of cell ``name`` (or of its name strip)."""
    from napari.utils.interactions import mouse_double_click_callbacks

    cell = next(c for c in montage.metadata["clipdenoise_compare"]["cells"] if c["name"] == name)
    top, left, height, width = cell["box"]
    row = (cell["strip_top"] + top) / 2 if strip else top + height / 2
    centre = montage.data_to_world((row, left + width / 2))

    class Event:  # what napari hands a layer's double-click callbacks: the world position
        position = tuple(centre)
        type = "mouse_double_click"

    mouse_double_click_callbacks(montage, Event())


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


def cells_of(layer) -> dict:
    """The montage's cells by name: ``{name: (cell metadata, the cell's pixels at their original size)}``."""
    meta = layer.metadata["clipdenoise_compare"]
    zoom = meta["zoom"]
    cells = {}
    for cell in meta["cells"]:
        top, left, height, width = cell["box"]
        pixels = np.asarray(layer.data)[top : top + height, left : left + width][::zoom, ::zoom]
        cells[cell["name"]] = (cell, pixels)
    return cells


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

    # one montage layer holds every cell; the numbers are the core metrics on the seeded inputs and on its pixels
    montages = compare_layers(viewer)
    assert [layer.name for layer in montages] == ["comparison"]
    montage = montages[0]
    cells = cells_of(montage)
    assert len(cells) == 3 * 4  # levels x (clean, noisy, 2 methods)
    zoom = montage.metadata["clipdenoise_compare"]["zoom"]
    np.testing.assert_allclose(montage.scale, (0.5 / zoom, 0.5 / zoom))  # the input's pixel size, enlarged cells
    for index, level in enumerate((15.0, 25.0, 50.0)):
        expected_noisy = add_noise(clean, "gaussian", level, rng=np.random.default_rng([7, index]))
        np.testing.assert_array_equal(cells[f"σ={level:g} · noisy"][1], expected_noisy)
        np.testing.assert_array_equal(cells[f"σ={level:g} · clean"][1], clean)  # the reference is shown
        for label in ("noisy", "random_rgb", "tv"):
            meta, pixels = cells[f"σ={level:g} · {label}"]
            row = next(r for r in rows if r[0] == label and r[2] == level)
            assert row[3] == metrics.psnr(clean, pixels, data_range=1.0) == meta["psnr"]
            assert row[4] == metrics.ssim(clean, pixels, data_range=1.0)
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
    """Problem 1: the montage's rows are levels, its columns clean/noisy/methods; cells named, view reset."""
    from napari_clipdenoise.widgets._cell_names import MIN_FONT_FRACTION

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

    montage = viewer.layers["comparison"]
    assert widget.grid_button.isChecked()  # the comparison opens in grid view: the montage alone
    assert [layer.name for layer in viewer.layers if layer.visible] == ["comparison"]
    assert not user.visible and not grid_of(viewer).enabled  # one view, no napari grid of many view boxes
    meta = montage.metadata["clipdenoise_compare"]
    columns = ("clean", "noisy", "tv", "wavelet")
    by_level = [[f"σ={level} · {column}" for column in columns] for level in (15, 50)]
    shape = tuple(meta["shape"])
    if shape == (2, 4):  # one row per level
        expected = [name for row in by_level for name in row]
    else:  # one column per level (taller than wide canvases: larger cells)
        assert shape == (4, 2)
        expected = [name for column in zip(*by_level, strict=True) for name in column]
    cells = meta["cells"]
    assert [cell["name"] for cell in cells] == expected  # row by row; the reference is a named cell
    assert [(cell["row"], cell["column"]) for cell in cells] == [divmod(i, shape[1]) for i in range(len(cells))]
    # every name is written in full above its cell, in a strip of its own, white on dark
    data = np.asarray(montage.data)
    for cell in cells:
        assert not cell["elided"], cell
        top, left, height, width = cell["box"]
        strip = data[cell["strip_top"] : top, left : left + width]
        assert strip.shape[0] >= 24 and strip.max() > 0.9 and np.median(strip) < 0.1  # white text, dark strip
        assert cell["font_pixels"] >= round(MIN_FONT_FRACTION * strip.shape[0])
    # the view was reset to the whole montage, which is on screen
    assert camera.zoom < zoomed
    # the names differ at their start, where napari's lists show them when they elide
    assert len({name[:12] for name in expected}) == len(expected)

    # grid off: everything back as it was; on again: the montage alone
    widget.grid_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert user.visible and not montage.visible
    widget.grid_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert montage.visible and not user.visible


def test_a_result_is_added_as_a_layer_of_the_users_from_the_table_or_a_double_click(make_napari_viewer, qtbot, clean):
    """Add as layer: the picked result, exact, with the input's geometry; kept when the next comparison runs."""
    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean", scale=(0.5, 0.5))
    widget = make_widget(viewer, qtbot)
    widget.set_methods(["tv"])
    widget.levels.setText("15, 50")
    run_and_wait(qtbot, widget)
    assert not widget.add_layer_button.isEnabled()  # nothing picked yet
    widget.table.setCurrentCell(1, 2)  # tv at sigma 50
    assert widget.add_layer_button.isEnabled()
    widget.add_layer_button.click()
    added = viewer.layers["σ=50 · tv"]
    run = next(r for r in widget.results.runs if r.method == "tv" and r.level == 50.0)
    np.testing.assert_array_equal(added.data, run.output)
    np.testing.assert_allclose(added.scale, (0.5, 0.5))
    source = added.metadata["clipdenoise_compare_source"]
    assert source["method"] == "tv" and source["level"] == 50.0 and source["psnr"] == run.psnr
    assert "clipdenoise_compare" not in added.metadata  # the user's: listed as an input, never replaced
    assert "σ=50 · tv" in [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())]
    widget.add_layer_button.click()  # the same result again: selected, not duplicated
    assert sum(layer.name.startswith("σ=50 · tv") for layer in viewer.layers) == 1
    widget.table.setCurrentCell(1, 0)  # the method's name: every level
    assert widget.selected_results() == [("tv", 15.0), ("tv", 50.0)]
    widget.add_layer_button.click()
    assert "σ=15 · tv" in viewer.layers
    assert sum(layer.name.startswith("σ=50 · tv") for layer in viewer.layers) == 1

    # a double-click on a cell of the montage adds that cell; one on a name strip adds nothing
    montage = viewer.layers["comparison"]
    count = len(viewer.layers)
    double_click(montage, "σ=15 · noisy", strip=True)
    assert len(viewer.layers) == count
    double_click(montage, "σ=15 · noisy")
    noisy = viewer.layers["σ=15 · noisy"]
    np.testing.assert_array_equal(noisy.data, widget.results.noisy[15.0])

    # a layer of the user's with the result's name is never overwritten: the copy gets a new name
    mine = viewer.add_image(np.zeros((8, 8), np.float32), name="σ=15 · clean")
    widget.table.setCurrentCell(0, 1)
    widget.add_result_layer("clean", 15.0)
    assert viewer.layers["σ=15 · clean"] is mine and mine.data.shape == (8, 8)
    np.testing.assert_array_equal(viewer.layers["σ=15 · clean (2)"].data, clean)
    # a montage cell whose result is gone (results replaced before the montage is) says so, no traceback
    widget.results.runs[:] = [r for r in widget.results.runs if r.method != "tv"]
    count = len(viewer.layers)
    double_click(montage, "σ=15 · tv")
    assert len(viewer.layers) == count and "Could not add 'σ=15 · tv'" in widget.status.text()

    run_and_wait(qtbot, widget)  # the next comparison replaces its montage, not the user's layers
    assert "σ=50 · tv" in viewer.layers and "σ=15 · noisy" in viewer.layers
    assert [layer.name for layer in compare_layers(viewer)] == ["comparison"]


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
    results = cells_of(viewer.layers["comparison"])
    assert list(results) == ["noisy input", "tv", "wavelet"]  # one row: the input, then each method
    residuals = cells_of(viewer.layers["comparison · residuals"])
    assert list(residuals) == ["tv · residual", "wavelet · residual"]
    np.testing.assert_allclose(residuals["tv · residual"][1], noisy - results["tv"][1], atol=1e-6)
    assert [layer.name for layer in viewer.layers if layer.visible] == ["comparison"]
    widget.residuals_button.click()  # grid view shows what each method removed
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert [layer.name for layer in viewer.layers if layer.visible] == ["comparison · residuals"]
    low, high = viewer.layers["comparison · residuals"].contrast_limits
    assert low == -high and high > 0  # zero residual is mid-grey
    # a double-click on a residual cell keeps that residual (not the result) as a layer
    double_click(viewer.layers["comparison · residuals"], "tv · residual")
    kept = viewer.layers["tv · residual"]
    np.testing.assert_allclose(kept.data, residuals["tv · residual"][1], atol=1e-6)
    assert kept.metadata["clipdenoise_compare_source"]["residual"] is True
    assert widget.table.headers[:2] == ["Method", "Residual σ (0-255)"]
    estimate = float(widget.summary.text().split(":")[1].split("(")[0])
    assert 20 < estimate < 30  # the true sigma is 25


def test_a_users_layer_with_a_comparison_name_is_never_overwritten(make_napari_viewer, qtbot, clean):
    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean")
    mine = viewer.add_image(np.zeros((8, 8), np.float32), name="comparison")
    widget = make_widget(viewer, qtbot)
    widget.mode.setCurrentIndex(1)
    widget.layer_combo.set_layer("clean")
    widget.set_methods(["tv"])
    run_and_wait(qtbot, widget)
    assert viewer.layers["comparison"] is mine and mine.data.shape == (8, 8)
    assert "clipdenoise_compare" in viewer.layers["comparison [compare]"].metadata
    widget.grid_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    widget.grid_button.click()
    qtbot.waitUntil(lambda: not widget.is_busy, timeout=WAIT_MS)
    assert viewer.layers["comparison [compare]"].visible and not mine.visible


def test_a_comparison_adds_one_montage_layer_not_one_per_cell(make_napari_viewer, qtbot, clean):
    """Problem 7: a dozen cells are one layer (one build on the GUI thread); the plot is drawn off it."""
    import threading

    from napari_clipdenoise.widgets import _plot

    drawn_in = []
    original = _plot.render_plot

    def recording(*args):
        drawn_in.append(threading.current_thread() is threading.main_thread())
        return original(*args)

    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean")
    widget = make_widget(viewer, qtbot)
    widget.set_methods(["tv", "wavelet"])
    inserted = []
    viewer.layers.events.inserted.connect(lambda event: inserted.append(event.value.name))
    _plot.render_plot = recording
    try:
        run_and_wait(qtbot, widget)
        qtbot.waitUntil(lambda: widget.plot.up_to_date, timeout=WAIT_MS)
    finally:
        _plot.render_plot = original
    assert inserted == ["comparison"]
    assert len(cells_of(viewer.layers["comparison"])) == 3 * 4
    assert drawn_in and not any(drawn_in)  # matplotlib never ran on the GUI thread
    assert not widget.plot.pixmap().isNull()


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


def test_colour_images_make_a_colour_montage_whose_first_cell_lies_over_the_input(make_napari_viewer, qtbot):
    from skimage import data, transform

    rgb = transform.resize(data.astronaut(), (48, 40), anti_aliasing=True).astype(np.float32)
    viewer = make_napari_viewer()
    layer = viewer.add_image(rgb, name="astronaut_clean", rgb=True, scale=(2.0, 3.0), translate=(10.0, -5.0))
    widget = make_widget(viewer, qtbot)
    widget.set_methods(["tv"])
    widget.levels.setText("25")
    run_and_wait(qtbot, widget)
    assert "Done" in widget.status.text(), widget.status.text()
    montage = viewer.layers["comparison"]
    assert montage.rgb and np.asarray(montage.data).shape[-1] == 3
    cells = cells_of(montage)
    np.testing.assert_array_equal(cells["σ=25 · clean"][1], rgb)
    run = next(r for r in widget.results.runs if r.method == "tv")
    np.testing.assert_array_equal(cells["σ=25 · tv"][1], run.output)
    first = montage.metadata["clipdenoise_compare"]["cells"][0]
    zoom = montage.metadata["clipdenoise_compare"]["zoom"]
    top, left = first["box"][:2]
    # the centre of the input's first pixel is the centre of the first cell's first (enlarged) pixel block
    block_centre = montage.data_to_world((top + (zoom - 1) / 2, left + (zoom - 1) / 2))
    np.testing.assert_allclose(block_centre, layer.data_to_world((0, 0)), atol=1e-6)
