"""Format readers/writers, atomic outputs, provenance and input discovery of the batch CLI (no network)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_clipdenoise.batch.discovery import check_output_folders, expand_inputs, plan_outputs
from napari_clipdenoise.formats import (
    format_of,
    looks_like_output,
    open_sink,
    open_source,
    output_name,
    read_provenance,
    split_name,
    tiff,
)
from napari_clipdenoise.formats.atomic import atomic_output, partial_path, remove_stale_partials
from napari_clipdenoise.formats.base import UnreadableImageError, UnsupportedFormatError
from napari_clipdenoise.formats.provenance import build_provenance, sidecar_path

PROVENANCE = build_provenance(
    {"name": "test", "sha256": "ab" * 32},
    {"tile_size": 32},
    source="in.tif",
    input_shape=(2, 3),
    input_dtype="uint8",
    axes="YX",
)


def roundtrip(path, out_path, transform=lambda a: a):
    """Open ``path``, write ``transform(data)`` through the format's sink, return (source, written array)."""
    source = open_source(path)
    data = np.asarray(source.data)
    result = transform(data).astype(data.dtype)
    with atomic_output(out_path) as temporary:
        sink = open_sink(source, temporary, source.shape, source.dtype, PROVENANCE)
        if sink.array is not None:
            sink.array[...] = result
        sink.finish(result)
    source.close()
    return source, result


def test_imagej_hyperstack_keeps_axes_resolution_and_metadata(tmp_path, rng):
    data = rng.integers(0, 60000, (2, 3, 24, 32), dtype=np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"axes": "ZCYX", "spacing": 0.7, "unit": "um", "Labels": list("abcdef"), "finterval": 2.0},
    )
    source, result = roundtrip(path, tmp_path / "out.tif", lambda a: a // 2)
    assert source.axes == "ZCYX" and source.axes_source == "ImageJ metadata"
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZCYX"
        meta = tif.imagej_metadata
        assert (meta["spacing"], meta["unit"], meta["finterval"], meta["Labels"]) == (0.7, "um", 2.0, list("abcdef"))
        assert tif.pages[0].resolution == (4.0, 4.0)
        np.testing.assert_array_equal(tif.asarray(), result)
    assert read_provenance(tmp_path / "out.tif")["model"]["name"] == "test"


def test_ome_tiff_keeps_physical_sizes_channel_names_and_gets_annotation(tmp_path, rng):
    data = rng.integers(0, 4000, (2, 24, 32), dtype=np.uint16)
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.3,
            "Channel": {"Name": ["DAPI", "GFP"]},
            "Name": "cells",
        },
    )
    source, result = roundtrip(path, tmp_path / "out.ome.tif")
    assert source.axes == "CYX" and source.axes_source == "OME metadata"
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "CYX"
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeXUnit"], pixels["PhysicalSizeY"]) == (0.25, "µm", 0.3)
        assert [c["Name"] for c in pixels["Channel"]] == ["DAPI", "GFP"]
        np.testing.assert_array_equal(tif.asarray(), result)
    assert read_provenance(tmp_path / "out.ome.tif")["parameters"] == {"tile_size": 32}


def test_plain_rgb_tiff_keeps_photometric_and_description(tmp_path, rng):
    data = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb", description="vendor text", metadata=None, resolution=(72.0, 72.0))
    source, result = roundtrip(path, tmp_path / "out.tif")
    assert source.axes == "YXS"
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        assert tif.pages[0].resolution == (72.0, 72.0)
        assert tif.shaped_metadata[0]["original_description"] == "vendor text"
        np.testing.assert_array_equal(tif.asarray(), result)
    assert read_provenance(tmp_path / "out.tif")["software"] == "napari-clipdenoise"


def test_large_tiffs_are_read_lazily_and_written_as_bigtiff(tmp_path, rng, monkeypatch):
    data = rng.integers(0, 60000, (3, 24, 32), dtype=np.uint16)
    plain, packed = tmp_path / "plain.tif", tmp_path / "packed.tif"
    tifffile.imwrite(plain, data, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(packed, data, compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"})
    monkeypatch.setattr(tiff, "IN_MEMORY_BYTES", 1024)
    mapped = open_source(plain)
    assert isinstance(mapped.data, np.memmap) and "memory-mapped" in mapped.notes[-1]
    np.testing.assert_array_equal(mapped.data[1], data[1])
    chunked = open_source(packed)
    assert not isinstance(chunked.data, np.ndarray) and "chunk by chunk" in chunked.notes[-1]
    np.testing.assert_array_equal(np.asarray(chunked.data[2]), data[2])
    chunked.close()
    monkeypatch.setattr(tiff, "BIGTIFF_BYTES", 1024)
    roundtrip(packed, tmp_path / "big.tif")
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff
        np.testing.assert_array_equal(tif.asarray(), data)


@pytest.mark.parametrize(
    "shape,dtype", [((24, 32), np.uint8), ((24, 32), np.uint16), ((24, 32, 3), np.uint16), ((24, 32, 4), np.uint8)]
)
def test_png_roundtrip_8_and_16_bit_with_text_chunk(tmp_path, rng, shape, dtype):
    import png

    data = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    path = tmp_path / "image.png"
    height, width = shape[:2]
    planes = 1 if len(shape) == 2 else shape[2]
    writer = png.Writer(width, height, greyscale=planes == 1, alpha=planes == 4, bitdepth=8 * np.dtype(dtype).itemsize)
    with open(path, "wb") as handle:
        writer.write(handle, data.reshape(height, width * planes))
    source, result = roundtrip(path, tmp_path / "out.png", lambda a: a[::-1])
    assert source.shape == shape and source.dtype == dtype
    again = open_source(tmp_path / "out.png")
    assert again.dtype == dtype
    np.testing.assert_array_equal(again.data, result)
    assert read_provenance(tmp_path / "out.png")["model"]["sha256"] == "ab" * 32


def test_jpeg_roundtrip_comment_and_sidecar_policy(tmp_path, rng):
    from PIL import Image

    data = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(data).save(tmp_path / "photo.jpg", quality=95, dpi=(300, 300))
    source, _ = roundtrip(tmp_path / "photo.jpg", tmp_path / "out.jpg")
    assert source.axes == "YXS"
    with Image.open(tmp_path / "out.jpg") as image:
        assert image.size == (32, 24) and image.mode == "RGB"
        assert round(image.info["dpi"][0]) == 300
    assert read_provenance(tmp_path / "out.jpg")["model"]["name"] == "test"
    sink = open_sink(open_source(tmp_path / "photo.jpg"), tmp_path / "x.jpg", (24, 32, 3), np.uint8, PROVENANCE)
    assert sink.embeds_provenance is False  # JPEG gets a JSON sidecar too
    with pytest.raises(ValueError, match="JPEG files hold uint8"):
        open_sink(source, tmp_path / "y.jpg", (24, 32, 3), np.float32, PROVENANCE)


def test_npy_is_memory_mapped_and_zarr_keeps_layout_and_attrs(tmp_path, rng):
    import zarr

    np.save(tmp_path / "a.npy", rng.random((3, 24, 32)).astype(np.float32))
    source = open_source(tmp_path / "a.npy")
    assert isinstance(source.data, np.memmap)
    roundtrip(tmp_path / "a.npy", tmp_path / "out.npy", lambda a: a * 2)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.load(tmp_path / "a.npy") * 2)

    array = zarr.create_array(
        tmp_path / "v.zarr",
        shape=(3, 24, 32),
        chunks=(1, 16, 16),
        dtype="uint16",
        dimension_names=("z", "y", "x"),
        attributes={"scale": [2, 0.5, 0.5]},
    )
    array[:] = rng.integers(0, 1000, (3, 24, 32))
    source, result = roundtrip(tmp_path / "v.zarr", tmp_path / "out.zarr", lambda a: a + 1)
    assert source.axes == "ZYX" and source.axes_source == "zarr dimension names"
    out = zarr.open_array(tmp_path / "out.zarr", mode="r")
    assert out.chunks == (1, 16, 16) and out.metadata.dimension_names == ("z", "y", "x")
    assert out.attrs["scale"] == [2, 0.5, 0.5]
    np.testing.assert_array_equal(out[:], result)
    assert read_provenance(tmp_path / "out.zarr")["input"]["axes"] == "YX"

    zarr.open_group(tmp_path / "group.zarr", mode="w").create_array("0", shape=(4, 4), dtype="uint8")
    with pytest.raises(UnreadableImageError, match="zarr group.*group.zarr/0"):
        open_source(tmp_path / "group.zarr")


def test_bad_inputs_name_the_reason(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "junk.tif").write_bytes(b"this is not a tiff" * 10)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UnreadableImageError, match="empty"):
        open_source(tmp_path / "empty.tif")
    with pytest.raises(UnreadableImageError, match="not a readable TIFF"):
        open_source(tmp_path / "junk.tif")
    with pytest.raises(UnreadableImageError, match="PNG"):
        open_source(tmp_path / "junk.png")
    with pytest.raises(UnsupportedFormatError, match=r"unsupported file type \.txt; supported: .*\.tif"):
        open_source(tmp_path / "notes.txt")


def test_names():
    from pathlib import Path

    assert split_name(Path("a.ome.tif")) == ("a", ".ome.tif")
    assert output_name(Path("x/cells.OME.TIFF")) == "cells_denoised.OME.TIFF"
    assert output_name(Path("v.zarr")) == "v_denoised.zarr"
    assert looks_like_output(Path("a_denoised.npy")) and looks_like_output(Path("a_denoised.npy.json"))
    assert not looks_like_output(Path("denoised.tif"))
    assert format_of(Path("a.JPEG")) == "jpeg"


def test_atomic_output_removes_partial_on_error_and_never_half_replaces(tmp_path):
    final = tmp_path / "out.tif"
    with pytest.raises(KeyboardInterrupt), atomic_output(final) as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    final.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="--overwrite"), atomic_output(final):
        pass
    with atomic_output(final, overwrite=True) as temporary:
        temporary.write_bytes(b"new")
        assert final.read_bytes() == b"old"
    assert final.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    folder = tmp_path / "out.zarr"
    for content in (b"1", b"2"):
        with atomic_output(folder, overwrite=True) as temporary:
            temporary.mkdir()
            (temporary / "chunk").write_bytes(content)
    assert (folder / "chunk").read_bytes() == b"2" and len(list(tmp_path.iterdir())) == 2


def test_stale_partials_of_dead_processes_are_removed(tmp_path):
    final = tmp_path / "out.tif"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = partial_path(final, int(dead.stdout))
    stale.write_bytes(b"x")
    mine = partial_path(final)
    mine.write_bytes(b"y")
    assert remove_stale_partials(final) == [stale]
    assert not stale.exists() and mine.exists()


def test_discovery_folders_globs_collisions_and_outdir(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.tif", "a_denoised.tif", "a_denoised.tif.json", ".hidden.tif", "b.png", "sub/a.tif", "sub/c.npy"):
        (tmp_path / "in" / name).write_bytes(b"x")
    (tmp_path / "in" / "notes.txt").write_text("x")
    flat = expand_inputs([str(tmp_path / "in")])
    assert [j.input.name for j in flat] == ["a.tif", "b.png", "notes.txt"]
    deep = plan_outputs(expand_inputs([str(tmp_path / "in")], recursive=True), tmp_path / "out")
    outputs = {j.input.relative_to(tmp_path / "in").as_posix(): j.output for j in deep}
    assert outputs["sub/a.tif"] == tmp_path / "out" / "sub" / "a_denoised.tif"
    assert outputs["a.tif"] == tmp_path / "out" / "a_denoised.tif"
    notes = next(j for j in deep if j.input.name == "notes.txt")  # found by scanning: skipped, not failed
    assert notes.error is None and "unsupported file type .txt" in notes.skip

    globbed = expand_inputs(
        [str(tmp_path / "in" / "*.tif"), str(tmp_path / "nothing*.tif"), str(tmp_path / "missing.tif")]
    )
    assert [j.input.name for j in globbed[:1]] == ["a.tif"]
    assert [j.error for j in globbed[1:]] == ["no file matches this pattern", "no such file or folder"]

    # an explicitly named earlier output would be overwritten by the first input's result: refused
    explicit = plan_outputs(
        expand_inputs([str(tmp_path / "in" / "a.tif"), str(tmp_path / "in" / "a_denoised.tif")]), None
    )
    assert "never overwritten" in explicit[0].error and explicit[1].error is None
    # two inputs with the same name into one folder
    same = plan_outputs(
        expand_inputs([str(tmp_path / "in" / "a.tif"), str(tmp_path / "in" / "sub" / "a.tif")]), tmp_path / "o"
    )
    assert same[0].error is None and "would also be written" in same[1].error

    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = plan_outputs(expand_inputs([str(tmp_path / "in" / "b.png")]), blocker / "out")
    assert check_output_folders(bad, create=True)
    assert (
        check_output_folders(
            plan_outputs(expand_inputs([str(tmp_path / "in" / "b.png")]), tmp_path / "new"), create=True
        )
        == []
    )


def test_sidecar_path_and_provenance_content(tmp_path):
    from napari_clipdenoise import __version__

    assert sidecar_path(tmp_path / "a_denoised.npy").name == "a_denoised.npy.json"
    assert PROVENANCE["version"] == __version__ and PROVENANCE["date"].endswith("+00:00")
    json.dumps(PROVENANCE)


def test_lazy_tiff_input_is_denoised_plane_by_plane_into_a_memory_mapped_output(tmp_path, rng, monkeypatch, gray_model):
    """Above the in-memory limit: chunked (zarr store) reading and a memory-mapped TIFF filled by the core."""
    from napari_clipdenoise import denoise
    from napari_clipdenoise.batch.discovery import Job
    from napari_clipdenoise.batch.runner import BatchSettings, process_job
    from napari_clipdenoise.inference.options import InferenceOptions

    data = rng.integers(0, 60000, (2, 32, 48), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data, compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"})
    monkeypatch.setattr(tiff, "IN_MEMORY_BYTES", 1024)

    class Quiet:
        def message(self, text):
            self.text = text

        def tiles_done(self, done, total):
            pass

    import torch

    progress = Quiet()
    settings = BatchSettings(InferenceOptions(tile_size=None, overlap=0, precision="fp32"), model_spec="gray")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several times faster than 2 threads on a busy 2-core machine
    try:
        record = process_job(
            Job(tmp_path / "s.tif", tmp_path / "s_denoised.tif"), gray_model, settings, {"name": "gray"}, progress
        )
        expected = denoise(data, gray_model, axes="ZYX", tile_size=None, overlap=0, precision="fp32", device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert record.status == "done", record.error
    assert "read lazily (chunk by chunk)" in progress.text and record.axes_source == "TIFF series"
    with tifffile.TiffFile(tmp_path / "s_denoised.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.NONE  # the memory-mapped path
        written = tif.asarray()
    np.testing.assert_array_equal(written, expected)
    assert read_provenance(tmp_path / "s_denoised.tif")["model"] == {"name": "gray"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["tif", "npy", "zarr"]),
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=2).map(lambda lead: (*lead, 16, 24)),
    dtype=st.sampled_from(["uint8", "uint16", "int16", "float32", "float64"]),
)
def test_any_shape_and_dtype_round_trips_through_its_sink(tmp_path_factory, kind, shape, dtype):
    import zarr

    folder = tmp_path_factory.mktemp("prop")
    data = (np.arange(np.prod(shape)) % 200).reshape(shape).astype(dtype)
    path = folder / f"in.{kind}"
    if kind == "tif":
        tifffile.imwrite(path, data, photometric="minisblack")
    elif kind == "npy":
        np.save(path, data)
    else:
        zarr.create_array(path, shape=shape, chunks=shape, dtype=dtype)[...] = data
    _, result = roundtrip(path, folder / f"out.{kind}", lambda a: a[..., ::-1, :])
    written = open_source(folder / f"out.{kind}")
    assert written.shape == shape and written.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(written.data[...]), result)
    written.close()
