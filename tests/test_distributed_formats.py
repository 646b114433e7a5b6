"""The dask block engine on OME-Zarr (0.4 / 0.5) and dask inputs, its own LocalCluster, and its error messages.

These run in this process (no client: the synchronous path), except the
``scheduler="local:1"`` test which starts and closes its own cluster.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from napari_clipdenoise import denoise
from napari_clipdenoise.distributed import denoise_zarr
from napari_clipdenoise.errors import DenoiseCancelled, ModelNotInstalledError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_channel_level0():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :64]
    dim = 200 + 60 * np.sin(yy / 7.0) + rng.normal(0, 15, (64, 64))
    bright = 2500 + 1200 * np.cos(xx / 11.0) + rng.normal(0, 200, (64, 64))
    return np.stack([dim, bright]).clip(0, 65535).astype(np.uint16)


def write_ome(path, level0, version):
    """A two-level OME-Zarr image (CYX): 0.5 in zarr v3, 0.4 in zarr v2."""
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    datasets = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5 * 2**i, 0.5 * 2**i]}]}
        for i in range(2)
    ]
    multiscales = [{"name": "cells", "axes": axes, "datasets": datasets}]
    if version == "0.5":
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.attrs.update({"ome": {"version": "0.5", "multiscales": multiscales}})
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.attrs.update({"multiscales": [{"version": "0.4", **multiscales[0]}]})
    group.create_array("0", data=level0, chunks=(1, 32, 32))
    group.create_array("1", data=level0[:, ::2, ::2], chunks=(1, 32, 32))
    return group


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_per_channel_ranges_and_rebuilt_pyramid(tmp_path, gray_checkpoint, version):
    level0 = two_channel_level0()
    source = write_ome(tmp_path / "in.ome.zarr", level0, version)
    options = dict(tile_size=32, overlap=16, precision="fp32", block_size=32)
    paths = (str(tmp_path / "in.ome.zarr"), str(tmp_path / "out.ome.zarr"))
    report = denoise_zarr(*paths, str(gray_checkpoint), **options)
    expected = denoise(level0, gray_checkpoint, axes="CYX", tile_size=32, overlap=16, precision="fp32")
    output = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r")
    assert output.metadata.zarr_format == source.metadata.zarr_format
    np.testing.assert_array_equal(output["0"][:], expected)
    # each channel was normalised with its own global range, like denoise() does
    low_dim, low_bright = (r["low"] for r in report["intensity_ranges"])
    assert [r["channels"] for r in report["intensity_ranges"]] == [[0], [1]] and low_bright > 5 * low_dim
    # the pyramid level was rebuilt from the denoised level 0 (2 x 2 means), with the input's layout
    assert output["1"].shape == (2, 32, 32) and output["1"].chunks == (1, 32, 32)
    means = expected.astype(np.float64).reshape(2, 32, 2, 32, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(output["1"][:], np.rint(means).astype(np.uint16))
    assert report["pyramid_levels"] == 1 and report["blocks_total"] == 4
    # the OME metadata is copied, the provenance added, the input untouched
    attributes = dict(output.attrs)
    ome = attributes["ome"]["multiscales"] if version == "0.5" else attributes["multiscales"]
    assert ome[0]["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0]
    assert attributes["napari_clipdenoise"]["job"]["axes"] == "CYX" and "complete" in attributes["napari_clipdenoise"]
    assert sorted(name for name, _ in output.members()) == ["0", "1"]  # finished: no job folder left behind
    assert not (tmp_path / "out.ome.zarr" / ".clipdenoise").exists()
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="r")["0"][:], level0)
    # a finished job is not redone, the pyramid is not rebuilt
    again = denoise_zarr(*paths, str(gray_checkpoint), **options)
    assert (again["blocks_done"], again["blocks_skipped"], again["pyramid_levels"]) == (0, 4, 0)


def test_dask_rgb_input_with_a_registry_name(tmp_path, installed_gaussian15, rgb_checkpoint):
    import dask.array as da
    from skimage import data

    image = data.astronaut()[::8, ::8][:64, :64]
    report = denoise_zarr(
        da.from_array(image, chunks=(32, 32, 3)),
        tmp_path / "out.zarr",
        "gaussian15",
        tile_size=32,
        overlap=16,
        precision="fp32",
        block_size=32,
    )
    expected = denoise(image, rgb_checkpoint, tile_size=32, overlap=16, precision="fp32")
    output = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert output.chunks == (32, 32, 3) and output.dtype == np.uint8
    np.testing.assert_array_equal(output[:], expected)
    assert report["intensity_ranges"] == [{"channels": [0, 1, 2], "low": 0.0, "high": 255.0, "rule": "uint8 range"}]
    assert report["blocks_total"] == 4 and report["scheduler"].startswith("synchronous")


def test_local_cluster_scheduler_string(tmp_path, gray_checkpoint):
    pytest.importorskip("distributed")
    image = (np.arange(2 * 32 * 32).reshape(2, 32, 32) % 997).astype(np.uint16)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(1, 32, 32))
    report = denoise_zarr(
        str(tmp_path / "in.zarr"),
        str(tmp_path / "out.zarr"),
        str(gray_checkpoint),
        scheduler="local:1",
        tile_size=None,
        precision="fp32",
    )
    assert report["scheduler"] == "LocalCluster (1 worker process)" and report["blocks_done"] == 2
    expected = denoise(image, gray_checkpoint, axes="ZYX", tile_size=None, precision="fp32")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], expected)


@pytest.fixture
def small_input(tmp_path):
    zarr.create_array(str(tmp_path / "in.zarr"), data=np.full((1, 32, 32), 5, np.uint16), chunks=(1, 32, 32))
    return tmp_path / "in.zarr"


def test_constant_input_is_copied_and_outputs_are_guarded(tmp_path, small_input, gray_checkpoint):
    run = dict(tile_size=None, precision="fp32")
    out = tmp_path / "out.zarr"
    report = denoise_zarr(str(small_input), str(out), str(gray_checkpoint), **run)
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], 5)
    assert report["blocks_done"] == 1
    with pytest.raises(FileExistsError, match="different job.*tile_size"):
        denoise_zarr(str(small_input), str(out), str(gray_checkpoint), tile_size=32, overlap=16)
    with pytest.raises(ValueError, match="is the input"):
        denoise_zarr(str(small_input), str(small_input), str(gray_checkpoint), **run)
    with pytest.raises(ValueError, match="inside/around"):
        denoise_zarr(str(small_input), str(small_input / "denoised"), str(gray_checkpoint), **run)
    other = tmp_path / "notes"
    other.mkdir()
    with pytest.raises(FileExistsError, match="not a clipdenoise output"):
        denoise_zarr(str(small_input), str(other), str(gray_checkpoint), **run)
    assert denoise_zarr(str(small_input), str(other), str(gray_checkpoint), overwrite=True, **run)["complete"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="never replaced"):  # overwrite never deletes a non-zarr folder
        denoise_zarr(str(small_input), str(tmp_path / "mine"), str(gray_checkpoint), overwrite=True, **run)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    # nor someone else's zarr store (issue 12: only what this software wrote is ever replaced)
    foreign = zarr.create_array(str(tmp_path / "theirs.zarr"), shape=(4, 4), chunks=(4, 4), dtype="uint8")
    foreign[:] = 9
    with pytest.raises(FileExistsError, match="not written by napari-clipdenoise"):
        denoise_zarr(str(small_input), str(tmp_path / "theirs.zarr"), str(gray_checkpoint), overwrite=True, **run)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "theirs.zarr"), mode="r")[:], 9)


def test_bad_inputs_say_what_to_do(tmp_path, small_input, gray_checkpoint):
    model = str(gray_checkpoint)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        denoise_zarr(str(tmp_path / "missing.zarr"), str(tmp_path / "o.zarr"), model)
    (tmp_path / "stack.tif").write_bytes(b"II*\x00")
    with pytest.raises(ValueError, match="convert TIFF"):
        denoise_zarr(str(tmp_path / "stack.tif"), str(tmp_path / "o.zarr"), model)
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("raw", shape=(4, 4), dtype="uint8")
    with pytest.raises(ValueError, match=r"no OME-Zarr 'multiscales'.*\['raw'\]"):
        denoise_zarr(str(tmp_path / "group.zarr"), str(tmp_path / "o.zarr"), model)
    with pytest.raises(TypeError, match="input must be"):
        denoise_zarr([1, 2, 3], str(tmp_path / "o.zarr"), model)
    with pytest.raises(ModelNotInstalledError, match="clipdenoise models import"):
        denoise_zarr(str(small_input), str(tmp_path / "o.zarr"), "srgb")
    for scheduler, message in (("nowhere", "scheduler must be"), ("local:0", "local:N"), (3, "scheduler must be")):
        with pytest.raises((ValueError, TypeError), match=message):
            denoise_zarr(str(small_input), str(tmp_path / f"o{scheduler}.zarr"), model, scheduler=scheduler)
    bad_options = (
        ({"tile_size": 40}, "multiple of 16"),
        ({"overlap": 64, "tile_size": 64}, "overlap"),
        ({"precision": "fp64"}, "precision"),
        ({"halo": -3}, "halo"),
        ({"batch_size": 0}, "batch_size"),
    )
    for option, message in bad_options:
        with pytest.raises(ValueError, match=message):
            denoise_zarr(str(small_input), str(tmp_path / "o.zarr"), model, **option)
    assert not (tmp_path / "o.zarr").exists()


def test_cancel_event_in_process_keeps_finished_blocks(tmp_path, gray_checkpoint):
    image = (np.arange(3 * 32 * 32).reshape(3, 32, 32) % 509).astype(np.uint16)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(1, 32, 32))
    stop = threading.Event()
    with pytest.raises(DenoiseCancelled) as caught:
        denoise_zarr(
            str(tmp_path / "in.zarr"),
            str(tmp_path / "out.zarr"),
            str(gray_checkpoint),
            tile_size=None,
            precision="fp32",
            cancel=stop,
            progress=lambda done, total: done == 1 and stop.set(),
        )
    assert caught.value.report["blocks_done"] == 1 and not caught.value.report["complete"]
    report = denoise_zarr(
        str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), str(gray_checkpoint), tile_size=None, precision="fp32"
    )
    assert (report["blocks_skipped"], report["blocks_done"]) == (1, 2)
    expected = denoise(image, gray_checkpoint, axes="ZYX", tile_size=None, precision="fp32")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], expected)


def test_odd_sizes_and_chunks_off_the_16_pixel_grid_are_exact(tmp_path, gray_checkpoint):
    """Chunks of 24 x 20 px on a 70 x 53 float image: block edges fall between tiles, the image edge mid-tile."""
    image = np.random.default_rng(5).random((70, 53)).astype(np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(24, 20))
    report = denoise_zarr(
        str(tmp_path / "in.zarr"),
        str(tmp_path / "out.zarr"),
        str(gray_checkpoint),
        tile_size=32,
        overlap=16,
        precision="fp32",
        block_size=24,
    )
    assert report["blocks_total"] == 9 and report["halo"] == "exact"
    expected = denoise(image, gray_checkpoint, tile_size=32, overlap=16, precision="fp32")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], expected)


def test_fixed_intensity_range_and_output_dtype(tmp_path, gray_checkpoint):
    image = (np.arange(2 * 32 * 32).reshape(2, 32, 32) % 701).astype(np.int16) - 300
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(1, 32, 32))
    report = denoise_zarr(
        str(tmp_path / "in.zarr"),
        str(tmp_path / "out.zarr"),
        str(gray_checkpoint),
        tile_size=None,
        precision="fp32",
        intensity_range=(-1024, 3072),
        output_dtype="float32",
    )
    assert report["intensity_ranges"] == [{"channels": [0], "low": -1024.0, "high": 3072.0, "rule": "given"}]
    expected = denoise(
        image,
        gray_checkpoint,
        axes="ZYX",
        tile_size=None,
        precision="fp32",
        intensity_range=(-1024, 3072),
        output_dtype="float32",
    )
    output = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert output.dtype == np.float32
    np.testing.assert_array_equal(output[:], expected)
    with pytest.raises(ValueError, match="low < high"):
        denoise_zarr(
            str(tmp_path / "in.zarr"), str(tmp_path / "other.zarr"), str(gray_checkpoint), intensity_range=(5, 5)
        )
    with pytest.raises(TypeError, match="output_dtype"):
        denoise_zarr(
            str(tmp_path / "in.zarr"), str(tmp_path / "other.zarr"), str(gray_checkpoint), output_dtype="complex64"
        )
    assert not (tmp_path / "other.zarr").exists()
