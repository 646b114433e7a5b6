"""The model-agnostic tiler: layout, blending, tiny images, cancellation, OOM retry."""

import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_clipdenoise.errors import DenoiseCancelled
from napari_clipdenoise.inference.tile_grid import plan_tiles
from napari_clipdenoise.inference.tiling import tiled_inference


def _local_filter(seed: int = 0):
    """A small translation-equivariant network (receptive field 9 px) for exact tiling checks."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Conv2d(8, 2, 3, padding=1),
    ).eval()
    return net


@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    tile=st.sampled_from([16, 32, 48, 64, 128, 512]),
    overlap=st.integers(0, 64),
)
@settings(max_examples=200, deadline=None)
def test_plan_covers_the_image_with_aligned_tiles(height, width, tile, overlap):
    overlap = min(overlap, tile - 1)
    plan = plan_tiles(height, width, tile, overlap)
    assert plan.padded_height % 16 == 0 and plan.padded_width % 16 == 0
    assert plan.padded_height >= height and plan.padded_width >= width
    assert plan.tile_height % 16 == 0 and plan.tile_width % 16 == 0
    assert all(s % 16 == 0 for s in plan.starts_y + plan.starts_x)
    covered = np.zeros((plan.padded_height, plan.padded_width), bool)
    weights = np.zeros(covered.shape)
    ramps_y, ramps_x = plan.weights_1d(0), plan.weights_1d(1)
    for y, x in plan.boxes:
        covered[y : y + plan.tile_height, x : x + plan.tile_width] = True
        weights[y : y + plan.tile_height, x : x + plan.tile_width] += np.outer(ramps_y[y], ramps_x[x])
    assert covered.all()
    assert weights.min() > 0, "every pixel gets a positive blending weight"


@given(
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    tile=st.sampled_from([16, 32, 48, 64, 96]),
    batch=st.integers(1, 5),
)
@settings(max_examples=40, deadline=None)
def test_identity_is_reproduced_exactly(height, width, tile, batch):
    plane = np.random.default_rng(height * 1000 + width).random((3, height, width), dtype=np.float32)
    out = tiled_inference(lambda x: x, plane, tile_size=tile, overlap=tile // 2, batch_size=batch)
    assert out.shape == plane.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, plane, rtol=0, atol=1e-6)


@given(
    height=st.integers(1, 160),
    width=st.integers(1, 160),
    tile=st.sampled_from([32, 48, 64, 96]),
    extra=st.integers(0, 16),
)
@settings(max_examples=30, deadline=None)
def test_local_network_tiled_equals_whole_image(height, width, tile, extra):
    """With overlap covering the receptive field twice, blending is exact away from padding."""
    net = _local_filter()
    plane = np.random.default_rng(7).random((3, height, width), dtype=np.float32)
    whole = tiled_inference(net, plane, tile_size=None)
    tiled = tiled_inference(net, plane, tile_size=tile, overlap=min(tile - 16, 16 + extra))
    assert tiled.shape == (2, height, width)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tile_size_none_is_one_pass():
    calls = []

    def fn(x):
        calls.append(tuple(x.shape))
        return x

    tiled_inference(fn, np.zeros((3, 100, 37), np.float32), tile_size=None)
    assert calls == [(1, 3, 112, 48)]
    calls.clear()
    tiled_inference(fn, np.zeros((3, 100, 37), np.float32), tile_size=None, pad_multiple=32)
    assert calls == [(1, 3, 128, 64)]


@pytest.mark.parametrize("tile, overlap", [(0, 0), (20, 4), (-16, 0), (32, 32), (32, -1)])
def test_bad_tiling_arguments(tile, overlap):
    with pytest.raises(ValueError, match="tile_size|overlap"):
        plan_tiles(100, 100, tile, overlap)


def test_progress_and_cancellation():
    plane = np.zeros((3, 128, 128), np.float32)
    done = []
    tiled_inference(lambda x: x, plane, tile_size=32, overlap=0, batch_size=3, on_tiles=done.append)
    assert sum(done) == 16 and max(done) == 3

    stop = threading.Event()
    seen = []

    def fn(x):
        seen.append(1)
        stop.set()  # cancel while the first batch runs: the next one must not start
        return x

    with pytest.raises(DenoiseCancelled):
        tiled_inference(fn, plane, tile_size=32, overlap=0, batch_size=2, cancel=stop)
    assert len(seen) == 1
    with pytest.raises(DenoiseCancelled):
        tiled_inference(lambda x: x, plane, tile_size=32, overlap=0, cancel=lambda: True)


def test_out_of_memory_shrinks_batch_then_tiles():
    shapes = []

    def fn(x):
        shapes.append(tuple(x.shape))
        if x.shape[0] > 1 or x.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return x * 2

    plane = np.random.default_rng(0).random((3, 200, 200), dtype=np.float32)
    out = tiled_inference(fn, plane, tile_size=256, overlap=32, batch_size=4)
    np.testing.assert_allclose(out, plane * 2, atol=1e-6)
    assert shapes[0] == (1, 3, 208, 208)  # a single tile covers the image: batch is 1 already
    assert shapes[-1][-1] == 64

    def always(x):
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError, match="64 px"):
        tiled_inference(always, plane, tile_size=128, overlap=16)


def test_non_finite_network_output_is_reported():
    with pytest.raises(FloatingPointError, match="fp32"):
        tiled_inference(lambda x: x * float("nan"), np.ones((3, 16, 16), np.float32), tile_size=None, precision="bf16")


@given(
    length=st.integers(1, 400).map(lambda n: 16 * n),
    tile=st.integers(2, 80).map(lambda n: 16 * n),
    overlap=st.integers(0, 300),
)
@settings(max_examples=300, deadline=None)
def test_balanced_tiles_are_the_smallest_that_need_no_more_tiles(length, tile, overlap):
    overlap = min(overlap, tile - 1)
    fixed = plan_tiles(length, 16, tile, overlap, balance=False)
    balanced = plan_tiles(length, 16, tile, overlap)
    n_fixed, n_balanced = len(fixed.starts_y), len(balanced.starts_y)
    t = balanced.tile_height
    assert t % 16 == 0 and t <= fixed.tile_height and n_balanced <= n_fixed
    assert n_balanced * t <= n_fixed * fixed.tile_height, "never more pixels computed"
    starts = balanced.starts_y
    shared = min(overlap, t - 16)  # strides are at least 16 px
    assert all(b - a <= t - shared for a, b in zip(starts, starts[1:], strict=False)), (
        "neighbours share at least `overlap` px"
    )
    if t < fixed.tile_height:  # one step smaller would need more tiles
        smaller = plan_tiles(length, 16, t - 16, min(overlap, t - 17), balance=False) if t - 16 > overlap else None
        assert smaller is None or len(smaller.starts_y) > n_fixed


def test_balancing_a_2048_px_camera_frame():
    """Three 1024 px tiles per axis compute 2.25x the image; three 864 px tiles 1.6x."""
    fixed = plan_tiles(2048, 2048, 1024, 256, balance=False)
    balanced = plan_tiles(2048, 2048, 1024, 256)
    assert (fixed.tile_height, len(fixed)) == (1024, 9)
    assert (balanced.tile_height, balanced.tile_width, len(balanced)) == (864, 864, 9)
    assert plan_tiles(4096, 4096, 1024, 256).tile_height == 1024, "already balanced: unchanged"
    pair = plan_tiles(1000, 1500, (1024, 512), 128, balance=False)
    assert (pair.tile_height, pair.tile_width, len(pair.starts_x)) == (1008, 512, 4)
    pair = plan_tiles(1000, 1500, (1024, 512), 128)  # 4 tiles of 480 px cover 1504 px as well
    assert (pair.tile_height, pair.tile_width, len(pair.starts_x)) == (1008, 480, 4)


def test_balanced_tiling_keeps_a_local_network_exact():
    net = _local_filter()
    plane = np.random.default_rng(3).random((3, 200, 330), dtype=np.float32)
    whole = tiled_inference(net, plane, tile_size=None)
    for balance in (True, False):
        tiled = tiled_inference(net, plane, tile_size=128, overlap=32, balance_tiles=balance)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("tile", [(32,), (32, 20), (32, True), "64"])
def test_bad_tile_pairs(tile):
    with pytest.raises(ValueError, match="tile_size"):
        plan_tiles(100, 100, tile, 8)
