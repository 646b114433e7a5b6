"""The noise-level comparison widget in a real napari viewer: layers, table, plot, numbers, CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_clipdenoise import metrics  # noqa: E402
from napari_clipdenoise.noise import add_noise  # noqa: E402
from napari_clipdenoise.widgets.compare import LAYER_PREFIX, CompareWidget, grid_of, parse_levels  # noqa: E402

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
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def test_two_methods_three_levels_table_plot_and_numbers(make_napari_viewer, qtbot, rgb_checkpoint, clean, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean", scale=(0.5, 0.5))
    widget = make_widget(viewer, qtbot)
    clip = widget.add_checkpoint(rgb_checkpoint)
    widget.set_methods([clip, "tv"])
    widget.noise.setCurrentText("gaussian")
    widget.levels.setText("15, 25, 50")
    widget.seed.setValue(7)
    run_and_wait(qtbot, widget)
    assert "Done" in widget.status.text(), widget.status.text()

    # table: (noisy + 2 methods) x 3 levels, in full precision
    assert widget.table.headers == ["Method", "Level", "PSNR (dB)", "SSIM", "Time (s)"]
    rows = widget.table.rows()
    assert len(rows) == 9 and widget.table.rowCount() == 9
    assert {row[0] for row in rows} == {"noisy input", "CLIP random_rgb", "tv"}

    # the numbers are the core metrics on the seeded inputs and on the layers' pixels
    for index, level in enumerate((15.0, 25.0, 50.0)):
        expected_noisy = add_noise(clean, "gaussian", level, rng=np.random.default_rng([7, index]))
        noisy_layer = viewer.layers[f"{LAYER_PREFIX}gaussian {level:g} · noisy"]
        np.testing.assert_array_equal(noisy_layer.data, expected_noisy)
        for label in ("noisy", "CLIP random_rgb", "tv"):
            layer = viewer.layers[f"{LAYER_PREFIX}gaussian {level:g} · {label}"]
            method = "noisy input" if label == "noisy" else label
            row = next(r for r in rows if r[0] == method and r[1] == level)
            assert row[2] == metrics.psnr(clean, layer.data, data_range=1.0)
            assert row[3] == metrics.ssim(clean, layer.data, data_range=1.0)
            np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    # tv with the known sigma really denoises: better than the noisy input at sigma 50
    noisy50 = next(r for r in rows if r[0] == "noisy input" and r[1] == 50.0)[2]
    tv50 = next(r for r in rows if r[0] == "tv" and r[1] == 50.0)[2]
    assert tv50 > noisy50

    # plot: one PSNR-vs-level line per method (and the noisy input)
    lines = widget.plot.lines()
    assert set(lines) == {"noisy input", "CLIP random_rgb", "tv"}
    for label, (xs, ys) in lines.items():
        assert xs == [15.0, 25.0, 50.0]
        method_rows = sorted((r for r in rows if r[0] == label), key=lambda r: r[1])
        assert ys == [r[2] for r in method_rows]

    # copy and CSV export carry the same numbers
    text = widget.table.copy_to_clipboard()
    assert text.splitlines()[0].split("\t") == widget.table.headers
    path = tmp_path / "comparison.csv"
    widget.table.export_csv(path)
    with open(path, newline="") as handle:
        exported = list(csv.reader(handle))
    assert exported[0] == widget.table.headers and len(exported) == 10
    assert float(exported[1][2]) == rows[0][2]

    # grid mode button
    widget.grid_button.click()
    assert grid_of(viewer).enabled
    assert viewer.layers["clean"].name_overlay.visible  # grid cells are named

    # same settings, same numbers; the previous comparison's layers are replaced, not duplicated
    count = len(viewer.layers)
    run_and_wait(qtbot, widget)
    assert [r[:4] for r in widget.table.rows()] == [r[:4] for r in rows]  # times differ, scores do not
    assert len(viewer.layers) == count


def test_without_reference_shows_results_residuals_and_noise_estimate(make_napari_viewer, qtbot, clean):
    viewer = make_napari_viewer()
    noisy = add_noise(clean, "gaussian", 25.0, rng=0)
    viewer.add_image(noisy, name="noisy")
    widget = make_widget(viewer, qtbot)
    widget.mode.setCurrentIndex(1)
    assert not widget.levels.isVisibleTo(widget)
    widget.set_methods(["wavelet", "tv"])
    run_and_wait(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert f"{LAYER_PREFIX}wavelet" in names and f"{LAYER_PREFIX}wavelet residual" in names
    residual = viewer.layers[f"{LAYER_PREFIX}tv residual"].data
    np.testing.assert_allclose(residual, noisy - viewer.layers[f"{LAYER_PREFIX}tv"].data, atol=1e-6)
    assert widget.table.headers[:2] == ["Method", "Residual σ (0-255)"]
    estimate = float(widget.summary.text().split(":")[1].split("(")[0])
    assert 20 < estimate < 30  # the true sigma is 25


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
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
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
    clip = widget.add_checkpoint(rgb_checkpoint)
    widget.set_methods([clip, "tv"])
    with pytest.raises(ValueError, match="unknown method"):
        widget.set_methods(["clip:gaussian15"])  # listed but not installed: not checkable
    install_model(rgb_checkpoint, "gaussian15")
    widget.refresh_methods_button.click()
    assert set(widget.selected_methods()) >= {clip, "tv"}
    widget.set_methods(["clip:gaussian15", "tv"])  # now installed: can be ticked
    assert widget.selected_methods() == ("clip:gaussian15", "tv")
