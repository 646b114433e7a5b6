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
