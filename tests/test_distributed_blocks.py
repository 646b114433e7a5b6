"""Block planning for the dask engine: pure arithmetic, no torch, no dask."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_clipdenoise.distributed.blocks import ALIGN, plan_blocks, read_range
from napari_clipdenoise.inference.axes import parse_axes
from napari_clipdenoise.inference.tile_grid import plan_tiles


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 5),
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    unit_z=st.integers(1, 3),
    unit_y=st.integers(1, 120),
    unit_x=st.integers(1, 120),
    tile=st.sampled_from([None, 32, 48, 64, 128]),
    overlap=st.sampled_from([0, 8, 16, 31]),
    halo=st.sampled_from([None, 0, 16, 40]),
    block_size=st.integers(1, 400),
)
def test_blocks_tile_the_array_once_in_whole_units(
    depth, height, width, unit_z, unit_y, unit_x, tile, overlap, halo, block_size
):
    shape, unit = (depth, height, width), (unit_z, unit_y, unit_x)
    layout = parse_axes("ZYX", shape)
    plan = plan_blocks(shape, unit, layout, tile_size=tile, overlap=overlap, halo=halo, block_size=block_size)
    covered = np.zeros(shape, np.int32)
    keys = set()
    for block in plan:
        covered[block.core_slices()] += 1
        keys.add(block.key)
        for axis, ((c0, c1), (r0, r1), u) in enumerate(zip(block.core, block.read, unit, strict=True)):
            assert c0 % u == 0 and (c1 % u == 0 or c1 == shape[axis])  # whole chunks/shards only: one writer each
            assert r0 <= c0 < c1 <= r1 <= shape[axis]
            if axis == 0:
                assert (r0, r1) == (c0, c1)  # no halo along Z
            elif halo is not None and halo > 0:
                assert r0 % ALIGN == 0 and (r1 % ALIGN == 0 or r1 == shape[axis])
                assert c0 - r0 >= min(halo, c0) and r1 - c1 >= min(halo, shape[axis] - c1)
    assert covered.min() == 1 and covered.max() == 1
    assert len(keys) == len(plan)


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 2000),
    tile=st.sampled_from([32, 48, 64, 80, 256, 1024]),
    overlap=st.sampled_from([0, 16, 20, 64]),
    start=st.integers(0, 1999),
    size=st.integers(1, 300),
)
def test_exact_read_range_gives_a_block_the_whole_images_tiles_and_weights(length, tile, overlap, start, size):
    """The window of the whole image's plan over a block's read range runs exactly the whole image's tiles that
    touch its output range, with the same blending weights, and is exact over the whole output range."""
    if overlap >= tile or start >= length:
        return
    stop = min(length, start + size)
    whole = plan_tiles(length, 16, tile, overlap)  # what denoise() does with the whole image
    first, last = read_range(start, stop, whole, 0, None)
    block = whole.window(first, 0, last - first, 16)  # what a worker runs
    touching = [s for s in whole.starts_y if s < stop and s + whole.tile_height > start]
    assert set(touching) <= {first + s for s in block.starts_y}
    (exact_low, exact_high), _ = block.exact_region()
    assert exact_low <= start and stop <= exact_high, "every output pixel of the block is exact"
    whole_weights, block_weights = whole.blend_weights(0), block.blend_weights(0)
    for s in touching:
        np.testing.assert_array_equal(block_weights[s - first], whole_weights[s])
    assert block.geometry([(0, 0)]).full_size == whole.full_size


def test_channel_axis_is_never_split_and_shards_are_the_unit():
    shape = (3, 4, 100, 130)
    layout = parse_axes("CZYX", shape)
    plan = plan_blocks(shape, (1, 2, 64, 64), layout, tile_size=32, overlap=16, block_size=64)
    assert plan.block_shape == (3, 2, 64, 64)
    assert len(plan) == 1 * 2 * 2 * 3
    with pytest.raises(ValueError, match="halo"):
        plan_blocks(shape, (1, 2, 64, 64), layout, tile_size=32, overlap=16, halo=-1)
    with pytest.raises(ValueError, match="chunk/shard shape"):
        plan_blocks(shape, (1, 64, 64), layout, tile_size=32, overlap=16)


def test_one_pass_planes_are_read_whole_in_exact_mode():
    shape = (2, 96, 96)
    plan = plan_blocks(shape, (1, 48, 48), parse_axes("ZYX", shape), tile_size=None, overlap=16, block_size=48)
    assert plan.block_shape == (1, 96, 96)
    assert all(block.read == block.core for block in plan)


def test_importing_the_package_loads_neither_torch_nor_dask():
    import subprocess
    import sys

    code = (
        "import sys, napari_clipdenoise.distributed as d; d.plan_blocks;"
        " print(sorted(m for m in ('torch', 'dask', 'distributed', 'zarr') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
