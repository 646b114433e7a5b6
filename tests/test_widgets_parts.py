"""The widgets' Qt-free parts: axes from layers, [0, 1] mapping, the progress bridge (no viewer needed)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Image  # noqa: E402

from napari_clipdenoise.jobs import Progress, iterate_progress  # noqa: E402
from napari_clipdenoise.unit_scale import UnitScale  # noqa: E402
from napari_clipdenoise.widgets._layers import geometry_kwargs, layer_axes, residual_limits  # noqa: E402


@pytest.mark.parametrize(
    ("shape", "kwargs", "axes"),
    [
        ((32, 32), {}, "YX"),
        ((5, 32, 32), {}, "ZYX"),
        ((32, 32, 3), {"rgb": True}, "YXC"),
        ((4, 32, 32, 3), {"rgb": True}, "ZYXC"),
        ((32, 32, 3), {"rgb": False}, "ZYX"),  # napari shows it as 32 planes of 32 x 3
        ((2, 5, 32, 32), {}, "CZYX"),
        ((3, 5, 32, 32), {"axis_labels": ("t", "z", "y", "x")}, "TZYX"),
        ((2, 32, 32), {"axis_labels": ("c", "y", "x")}, "CYX"),
        ((2, 32, 32), {"axis_labels": ("Channel", "Y", "X")}, "CYX"),
        ((6, 32, 32, 3), {"rgb": True, "axis_labels": ("time", "y", "x")}, "TYXS"),
        ((2, 32, 32), {"axis_labels": ("y", "y2", "x")}, "ZYX"),  # not all names: guessed from the shape
        ((2, 32, 32), {"axis_labels": ("z", "x", "y")}, "ZXY"),  # transposed data stays transposed
    ],
)
def test_layer_axes(shape, kwargs, axes):
    layer = Image(np.zeros(shape, np.uint8), **kwargs)
    assert layer_axes(layer) == axes


def test_geometry_offset_moves_translate_by_whole_pixels():
    layer = Image(np.zeros((4, 8, 8)), scale=(2.0, 0.5, 0.5), translate=(1.0, 3.0, 0.0), units=("µm",) * 3)
    geometry = geometry_kwargs(layer, offset={0: 3})
    assert geometry["translate"] == (7.0, 3.0, 0.0) and geometry["scale"] == (2.0, 0.5, 0.5)
    assert geometry["units"] == ("micrometer",) * 3


def test_residual_limits_are_symmetric():
    low, high = residual_limits(np.array([-1.0, 1.0, -1.0, 1.0], np.float32))
    assert low == -high == -3.0
    assert residual_limits(np.zeros(4, np.float32)) == (-1.0, 1.0)


def test_unit_scale_choices():
    assert UnitScale.for_image(np.array([[0, 10]], np.uint8)) == UnitScale(0.0, 255.0)
    assert UnitScale.for_image(np.array([[-0.2, 1.3]], np.float32)) == UnitScale(0.0, 1.0)
    scale = UnitScale.for_image(np.array([[100, 4100]], np.uint16))
    assert scale == UnitScale(100.0, 4100.0)
    np.testing.assert_allclose(scale.to_unit(np.array([100, 2100, 4100])), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(scale.from_unit(np.array([0.0, 0.5, 1.0]), np.uint16), [100, 2100, 4100])
    with pytest.raises(ValueError, match="constant"):
        UnitScale.for_image(np.full((4, 4), 7, np.uint16))
    with pytest.raises(ValueError, match="NaN"):
        UnitScale.for_image(np.array([[0.0, np.nan]]))


def drain(generator):
    reports = []
    while True:
        try:
            reports.append(next(generator))
        except StopIteration as stop:
            return reports, stop.value


def test_iterate_progress_forwards_every_report_and_returns_the_value():
    def call(progress):
        for done in range(1, 6):
            progress(done, 5)
        return "result"

    reports, value = drain(iterate_progress(call, message="m"))
    assert value == "result"
    assert reports == [Progress(d, 5, "m") for d in range(1, 6)]


def test_iterate_progress_reraises_in_the_consumer():
    def call(progress):
        progress(1, 2)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        drain(iterate_progress(call))


def test_closing_early_sets_cancel_and_waits_for_the_call():
    cancel = threading.Event()
    finished = threading.Event()

    def call(progress):
        while not cancel.is_set():
            progress(1, 10)
            time.sleep(0.01)
        finished.set()

    generator = iterate_progress(call, cancel=cancel)
    next(generator)
    generator.close()
    assert cancel.is_set() and finished.is_set()


def test_progress_tracker_is_honest():
    from napari_clipdenoise.jobs import ProgressTracker

    now = [0.0]
    tracker = ProgressTracker("tiles", clock=lambda: now[0])
    view = tracker.update(Progress(0, 0, "loading model"))
    assert view.busy and view.text == "loading model… 0 s"
    now[0] = 2.0
    view = tracker.update(Progress(0, 1, "denoising"))
    assert view.busy and "one tile" in view.text and "0 / 1" not in view.text  # one tile: busy, not 0 / 1
    tracker = ProgressTracker("tiles", clock=lambda: now[0])
    tracker.update(Progress(0, 10, "denoising"))
    now[0] = 6.0
    view = tracker.update(Progress(2, 10, "denoising"))
    assert (view.done, view.total) == (2, 10)
    assert view.text == "denoising: 2 / 10 tiles · 4 s, about 16 s left"
    view = tracker.update(Progress(-1, -1, "tv, level 25: tile 3/9"))  # a caption only: the count stays
    assert (view.done, view.total) == (2, 10) and view.text.startswith("tv, level 25: tile 3/9")


def test_comparison_names_tables_and_grid_orientation():
    from napari_clipdenoise.comparison import (
        CLEAN,
        NOISY,
        CompareResults,
        CompareSettings,
        MethodRun,
        grid_shape,
        layer_name,
        method_labels,
        records,
        score_grid,
    )

    settings = CompareSettings(methods=("model:/x/gaussian15.safetensors", "model:gaussian15", "tv"), levels=(15, 50))
    labels = method_labels(settings.methods)
    assert labels == {
        "model:/x/gaussian15.safetensors": "gaussian15.safetensors",
        "model:gaussian15": "gaussian15",
        "tv": "tv",
    }
    runs = []
    for level in settings.levels:
        runs.append(MethodRun(NOISY, level, np.zeros(1), 0.0, psnr=20.0 - level / 10, ssim=0.5))
        for offset, method in enumerate(settings.methods):
            runs.append(MethodRun(method, level, np.zeros(1), 1.0 + offset, psnr=25.0 + offset, ssim=0.7))
    results = CompareResults(settings, runs=runs, clean=np.zeros(1))
    assert layer_name(results, runs[3]) == "σ=15 · tv" and layer_name(results, CLEAN, 50) == "σ=50 · clean"
    rows, columns, values, best = score_grid(results, "psnr")
    assert rows == ["noisy", "gaussian15.safetensors", "gaussian15", "tv"] and columns == ["σ=15", "σ=50"]
    assert values[3] == [27.0, 27.0] and best == [3, 3]
    assert score_grid(results, "seconds")[2][0] == [None, None]  # the noisy input took no time
    assert score_grid(results, "seconds")[3] == [1, 1]  # the fastest method
    headers, table = records(results)
    assert headers[:3] == ["Method", "Noise", "Level"] and len(table) == 8
    # 2 levels x 5 columns: a wide canvas gets rows of levels, a tall one columns of levels
    assert grid_shape(results, (600, 1200)) == ((2, 5), False)
    assert grid_shape(results, (1200, 400)) == ((5, 2), True)
