"""The comparison montage (core, no Qt): exact cells, name strips, enlargement of small images, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clipdenoise.montage import MIN_CELL_WIDTH, compose_montage, montage_geometry


def test_cells_hold_the_exact_images_row_by_row_with_a_strip_above_each():
    rng = np.random.default_rng(0)
    images = [rng.random((50, 70), dtype=np.float32) for _ in range(5)]
    names = [f"cell {i}" for i in range(5)]
    montage = compose_montage(images, names, (2, 3), background=-1.0)
    zoom, strip, gap = montage_geometry(50, 70)
    assert montage.zoom == zoom == 6 and 70 * zoom >= MIN_CELL_WIDTH  # small cells are enlarged by a whole factor
    assert [(c.row, c.column) for c in montage.cells] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    for cell, image in zip(montage.cells, images, strict=True):
        np.testing.assert_array_equal(montage.original(cell), image)  # every original pixel, exactly
        assert cell.top - cell.strip_top == strip
        assert np.all(montage.image[cell.strip_slice()] == -1.0)  # the strip waits for its name
        assert montage.cell_at(cell.top + 1, cell.left + 1) is cell
    assert montage.cell_at(montage.cells[0].strip_top, 0) is None  # a strip is no cell
    rows, columns = montage.image.shape
    assert rows == 2 * (strip + 50 * zoom + gap) - gap and columns == 3 * (70 * zoom + gap) - gap
    assert np.all(montage.image[montage.cells[-1].image_slice()[0], -70 * zoom :] == -1.0)  # the empty last cell


def test_large_and_colour_images_keep_their_size_and_channels():
    image = np.linspace(0, 1, 600 * 500 * 3, dtype=np.float32).reshape(600, 500, 3)
    montage = compose_montage([image, image[::-1]], ["a", "b"], (1, 2))
    assert montage.zoom == 1 and montage.image.shape[2] == 3
    np.testing.assert_array_equal(montage.original(montage.cells[1]), image[::-1])


@pytest.mark.parametrize(
    ("images", "names", "shape", "message"),
    [
        ([], [], (1, 1), "at least one"),
        ([np.zeros((4, 4))] * 3, ["a", "b", "c"], (1, 2), "do not fit"),
        ([np.zeros((4, 4)), np.zeros((4, 5))], ["a", "b"], (1, 2), "share one shape"),
        ([np.zeros((4, 4, 2))], ["a"], (1, 1), r"\(H, W\) or \(H, W, 3\)"),
        ([np.zeros((4, 4))], ["a", "b"], (1, 2), "1 images but 2 names"),
        ([np.zeros((0, 4))], ["a"], (1, 1), "at least one pixel"),
    ],
)
def test_bad_input_is_refused_with_the_reason(images, names, shape, message):
    with pytest.raises(ValueError, match=message):
        compose_montage(images, names, shape)


def test_a_montage_too_large_for_a_display_texture_shows_every_nth_pixel():
    image = np.arange(900 * 1000, dtype=np.float32).reshape(900, 1000)
    montage = compose_montage([image] * 4, list("abcd"), (2, 2), max_edge=1500)
    assert montage.shrink == 2 and montage.zoom == 1 and max(montage.image.shape) <= 1500
    rows, columns = montage.cells[3].image_slice()
    np.testing.assert_array_equal(montage.image[rows, columns], image[::2, ::2])
    with pytest.raises(ValueError, match="not the original images"):
        montage.original(montage.cells[0])
    assert compose_montage([image], ["a"], (1, 1)).shrink == 1  # the default limit is a GPU texture's


def test_a_wide_flat_image_keeps_a_strip_no_taller_than_half_of_it():
    zoom, strip, _gap = montage_geometry(40, 2000)
    assert zoom == 1 and strip == 24  # 13% of the width would be 260 rows over a 40-row image
    assert montage_geometry(600, 600)[1] == round(600 * 0.13)
