"""planes="ortho": the XY, XZ and YZ passes averaged; shape, dtype, equivalence and memory bounds.

The reference for the averaging is built from three ordinary ``planes="xy"`` runs on
transposed copies of the volume (same fixed intensity range, fp32), so it checks the
ortho code against the XY path, not against itself.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from napari_clipdenoise import denoise, plan_denoise
from napari_clipdenoise.inference import ortho
from napari_clipdenoise.inference.options import InferenceOptions, OptionError

FAST = {"tile_size": None, "precision": "fp32", "device": "cpu"}


@pytest.fixture
def volume(rng):
    return rng.normal(500.0, 80.0, (3, 16, 20)).astype(np.float32)


def test_ortho_is_the_mean_of_xy_passes_along_each_axis(volume, gray_model, one_torch_thread, tmp_path):
    fixed = {"intensity_range": (0.0, 1000.0), **FAST}
    result = denoise(volume, gray_model, axes="ZYX", planes="ortho", **fixed)
    xy = denoise(volume, gray_model, axes="ZYX", **fixed)
    # XZ planes: one per y, i.e. XY planes of the volume with Y as the slice axis; YZ likewise with X
    xz = denoise(np.ascontiguousarray(volume.transpose(1, 0, 2)), gray_model, axes="ZYX", **fixed).transpose(1, 0, 2)
    yz = denoise(np.ascontiguousarray(volume.transpose(2, 0, 1)), gray_model, axes="ZYX", **fixed).transpose(1, 2, 0)
    np.testing.assert_allclose(result, (xy + xz + yz) / 3.0, rtol=0, atol=2e-3)
    assert result.dtype == np.float32 and result.shape == volume.shape
    assert np.abs(result - xy).max() > 1.0  # the other two passes changed it
    np.save(tmp_path / "v.npy", volume)  # a lazy (memory-mapped) input: accumulator on disk, same numbers
    lazy = denoise(np.load(tmp_path / "v.npy", mmap_mode="r"), gray_model, axes="ZYX", planes="ortho", **fixed)
    np.testing.assert_array_equal(lazy, result)


@pytest.mark.parametrize(
    ("shape", "axes", "dtype"),
    [((3, 16, 16), "ZYX", np.uint16), ((2, 2, 16, 16), "CZYX", np.float32), ((2, 2, 16, 16), "TZYX", np.int16)],
)
def test_shape_and_dtype_are_kept(shape, axes, dtype, gray_model, one_torch_thread, rng):
    data = rng.integers(0, 2000, shape).astype(dtype)
    plan = plan_denoise(data, gray_model, axes=axes, planes="ortho", **FAST)
    per_volume = plan.ortho.tiles_per_volume
    assert plan.total_tiles == per_volume * len(plan.ortho.volumes) * len(plan.groups)
    seen = []
    result = denoise(data, gray_model, plan=plan, progress=lambda done, total: seen.append((done, total)))
    assert result.shape == data.shape and result.dtype == data.dtype
    assert seen[-1] == (plan.total_tiles, plan.total_tiles)


def test_rgb_volume_with_an_rgb_model(rgb_model, one_torch_thread, rng):
    data = rng.integers(0, 255, (2, 16, 16, 3)).astype(np.uint8)
    result = denoise(data, rgb_model, axes="ZYXS", planes="ortho", **FAST)
    assert result.shape == data.shape and result.dtype == np.uint8


def test_ortho_needs_a_z_axis_and_whole_volumes(gray_model, rng):
    with pytest.raises(OptionError, match="planes 'ortho' needs a volume with a Z axis"):
        plan_denoise(rng.random((3, 32, 32)), gray_model, axes="TYX", planes="ortho")
    with pytest.raises(OptionError, match="at least 2 slices"):
        plan_denoise(rng.random((1, 32, 32)), gray_model, axes="ZYX", planes="ortho")
    with pytest.raises(OptionError, match="planes must be one of xy, ortho"):
        InferenceOptions(planes="diagonal")
    from napari_clipdenoise.inference.pipeline import ImageWindow

    with pytest.raises(OptionError, match="whole volumes"):
        plan_denoise(rng.random((3, 32, 32)), gray_model, axes="ZYX", planes="ortho", window=ImageWindow(64, 64, 0, 0))


def test_the_dask_engine_refuses_ortho(tmp_path, gray_checkpoint, rng):
    pytest.importorskip("zarr")
    from napari_clipdenoise.distributed import denoise_zarr

    with pytest.raises(OptionError, match="block-wise dask engine"):
        denoise_zarr(rng.random((3, 32, 32)).astype(np.float32), tmp_path / "o.zarr", gray_checkpoint, planes="ortho")


def _numpy_bytes_held(run) -> int:
    """The most numpy memory held at progress reports during ``run(progress)`` (tracemalloc's numpy domain)."""
    only_numpy = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    held = [0]

    def progress(done: int, total: int) -> None:
        if done not in {total // 4, total // 2, 3 * total // 4}:  # a snapshot is slow: sample during each pass
            return
        snapshot = tracemalloc.take_snapshot().filter_traces(only_numpy)
        held[0] = max(held[0], sum(stat.size for stat in snapshot.statistics("filename")))

    tracemalloc.start()
    try:
        run(progress)
    finally:
        tracemalloc.stop()
    return held[0]


def test_memory_bounds_in_memory_and_lazy(gray_model, one_torch_thread, rng, monkeypatch, tmp_path):
    """While the passes run: an in-memory input holds the output and one float32 accumulator; a lazy one
    holds neither (the accumulator is a temporary file, the input is read in bounded slabs)."""
    options = {"axes": "ZYX", "planes": "ortho", "intensity_range": (-4.0, 4.0), **FAST}
    monkeypatch.setattr(ortho, "SLAB_BYTES", 2 * 32 * 16 * 4)  # slabs of 2 rows / columns
    monkeypatch.setattr(ortho.tempfile, "tempdir", str(tmp_path))  # where the accumulator file goes
    data = rng.normal(0.0, 1.0, (32, 16, 16)).astype(np.float32)
    volume = data.nbytes  # 32 kB
    in_memory = _numpy_bytes_held(lambda progress: denoise(data, gray_model, progress=progress, **options))
    assert 2 * volume <= in_memory <= 2 * volume + volume / 2  # output + accumulator + plane-sized pieces

    np.save(tmp_path / "in.npy", data)
    image = np.load(tmp_path / "in.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=data.shape)
    lazy = _numpy_bytes_held(lambda progress: denoise(image, gray_model, out=out, progress=progress, **options))
    assert lazy < volume / 4, lazy
    assert np.isfinite(out).all() and np.abs(out).max() > 0  # (equal to the in-memory result: tested above)
    assert not list(tmp_path.glob("clipdenoise-ortho-*"))  # the accumulator file is gone


def test_the_cli_takes_planes(tmp_path, gray_checkpoint, rng):
    import json
    import os
    import subprocess
    import sys

    import tifffile

    tifffile.imwrite(
        tmp_path / "stack.tif", rng.integers(0, 4000, (3, 32, 32)).astype(np.uint16), photometric="minisblack"
    )
    done = subprocess.run(
        [sys.executable, "-m", "napari_clipdenoise.cli", "denoise", str(tmp_path / "stack.tif"), "-m",
         str(gray_checkpoint), "--axes", "ZYX", "--planes", "ortho", "--tile-size", "none", "--device", "cpu",
         "--precision", "fp32", "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["options"]["planes"] == "ortho"
    assert tifffile.imread(tmp_path / "stack_denoised.tif").shape == (3, 32, 32)
    bad = subprocess.run(
        [sys.executable, "-m", "napari_clipdenoise.cli", "denoise", str(tmp_path / "stack.tif"), "--planes", "z"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "--planes" in bad.stderr
