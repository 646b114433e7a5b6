"""Issue 12 (batch side): nothing lost, overwritten or silently corrupted, one test per class.

Real files, real ``clipdenoise`` subprocesses, a real tmpfs for the full disk,
the real dask engine. The model is a tiny seeded random-weight checkpoint: the
outputs are not denoised images; what is checked is what happens to the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_clipdenoise import denoise, plan_denoise

CLI = [sys.executable, "-m", "napari_clipdenoise.cli"]
FAST = ["--tile-size", "none", "--precision", "fp32", "--device", "cpu"]
INT_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]


def run(args, timeout=240, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, check=False, **kwargs
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def statuses(report: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in json.loads(report.read_text())["files"]}


def small_tiff(path: Path, seed: int = 0, shape=(32, 32)) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 60000, shape, dtype=np.uint16)
    tifffile.imwrite(path, data)
    return data


# ----------------------------------------------------------------------------------------- class 1
def test_class1_report_and_outputs_never_replace_what_the_run_did_not_create(tmp_path, gray_checkpoint):
    """``--report *.tif``, an existing file, a folder, a missing folder; foreign files and links at outputs."""
    for name in "abc":
        small_tiff(tmp_path / f"{name}.tif", seed=ord(name))
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "folder").mkdir()
    (tmp_path / "c_denoised.tif").write_bytes(b"precious, not an output")
    elsewhere = tmp_path / "elsewhere.tif"
    elsewhere.write_bytes(b"also precious")
    before = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    model = ["--model", gray_checkpoint, *FAST]

    # the shell expands ``--report *.tif`` to ``--report a.tif b.tif c.tif``: a.tif must survive
    cases = {
        "a.tif": "exists and is not a report file",
        "notes.txt": "exists and is not a report file",
        "folder": "is a folder",
        "missing/report.json": "does not exist; create it first",
    }
    for target, expected in cases.items():
        result = run(["denoise", "--report", tmp_path / target, tmp_path / "b.tif", *model])
        assert result.returncode == 2, (target, result.stderr)
        assert expected in result.stderr and "clipdenoise: error: nothing was done" in result.stderr
    # a foreign file where an output goes: refused, with and without --overwrite; a link there: refused
    (tmp_path / "b_denoised.tif").symlink_to(elsewhere)
    for extra in ([], ["--overwrite"]):
        result = run(["denoise", tmp_path / "b.tif", tmp_path / "c.tif", *model, *extra])
        assert result.returncode == 2, result.stderr
        assert "c_denoised.tif: exists and was not written by napari-clipdenoise" in result.stderr
        assert "b_denoised.tif: is a symbolic link" in result.stderr
    # a foreign sidecar where an NPY output's provenance goes: refused too
    np.save(tmp_path / "n.npy", np.zeros((16, 16), np.float32))
    (tmp_path / "n_denoised.npy.json").write_text('{"mine": true}')
    result = run(["denoise", tmp_path / "n.npy", *model])
    assert result.returncode == 2 and "n_denoised.npy.json exists and was not written" in result.stderr

    after = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file() and not p.is_symlink()}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing was replaced
    assert not (tmp_path / "missing").exists() and not any(tmp_path.glob(".partial-*"))
    assert os.readlink(tmp_path / "b_denoised.tif") == str(elsewhere)

    # the same report path as an earlier report (ours) is replaced; a real run goes through
    result = run(["denoise", tmp_path / "a.tif", "--report", tmp_path / "run.json", *model])
    assert result.returncode == 0, result.stderr
    result = run(["denoise", tmp_path / "a.tif", "--report", tmp_path / "run.json", *model])
    assert result.returncode == 0 and statuses(tmp_path / "run.json")["a.tif"]["status"] == "skipped"


# ----------------------------------------------------------------------------------------- class 4
def _exact_cast(values: np.ndarray, dtype) -> np.ndarray:
    """Round half to even and clip with Python integers (exact at every limit, no float rounding)."""
    info = np.iinfo(dtype)
    rounded = [min(max(round(v), int(info.min)), int(info.max)) for v in values.ravel().tolist()]
    return np.array(rounded, dtype=dtype).reshape(values.shape)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(INT_DTYPES),
    side=st.sampled_from(["min", "max"]),
    span_bits=st.integers(7, 64),
    data=st.data(),
)
def test_class4_integer_results_at_and_beyond_the_limits_are_clipped_never_wrapped(
    gray_model, one_torch_thread, dtype, side, span_bits, data
):
    """Property: denoise() in an integer dtype == the float32 result rounded and clipped exactly.

    The intensity range starts at the dtype's limit, so the network's outputs land
    on both sides of it (at, beyond and inside the range).
    """
    info = np.iinfo(dtype)
    extremes = [int(info.min), int(info.min) + 1, 0, int(info.max) - 1, int(info.max)]
    image = data.draw(
        arrays(dtype, (16, 16), elements=st.sampled_from(extremes) | st.integers(int(info.min), int(info.max)))
    )
    limit = float(info.max if side == "max" else info.min)
    span = max(float(2 ** min(span_bits, 8 * np.dtype(dtype).itemsize)), abs(limit) * 2.0**-30)  # low < high
    options = dict(tile_size=None, precision="fp32", device="cpu", intensity_range=(limit, limit + span))
    result = denoise(image, gray_model, **options)
    floats = denoise(image, gray_model, output_dtype="float32", **options)
    assert result.dtype == np.dtype(dtype) and result.shape == image.shape
    np.testing.assert_array_equal(result, _exact_cast(floats, dtype))
    assert (result[floats >= float(info.max)] == info.max).all()  # at or past the maximum: the maximum, not 0
    assert (result[floats <= float(info.min)] == info.min).all()


def test_class4_every_integer_dtype_through_the_cli_and_float16_clipping_is_noted(
    tmp_path, gray_checkpoint, gray_model
):
    """TIFF, NPY and zarr hold every integer dtype, PNG uint8/uint16: results at both limits, bit for bit."""
    import imageio.v3 as iio
    import torch
    import zarr

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    arrays_written = {}
    for dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        image = rng.integers(int(info.min), int(info.max), (16, 16), dtype=dtype, endpoint=True)
        image[0, :4] = [info.min, info.max, info.min, info.max]
        for kind in ("tif", "npy", "zarr"):
            name = f"{dtype}_{kind}.{kind}"
            if kind == "tif":
                tifffile.imwrite(folder / name, image)
            elif kind == "npy":
                np.save(folder / name, image)
            else:
                zarr.create_array(folder / name, data=image, chunks=(8, 8))
            arrays_written[name] = image
        if dtype in ("uint8", "uint16"):
            iio.imwrite(folder / f"{dtype}_png.png", image)
            arrays_written[f"{dtype}_png.png"] = image
    np.save(folder / "half.npy", rng.random((16, 16)).astype(np.float16))
    arrays_written["half.npy"] = np.load(folder / "half.npy")

    # below every minimum (the dtype's own range) / beyond every maximum (a range starting at 2**64)
    for label, intensity in (("low", "dtype"), ("high", f"{2.0**64!r},{2.0**65!r}")):
        out = tmp_path / label
        report = tmp_path / f"{label}.json"
        result = run(
            [
                "denoise",
                folder,
                "-o",
                out,
                "--model",
                gray_checkpoint,
                *FAST,
                f"--intensity-range={intensity}",
                "--report",
                report,
            ]
        )
        assert result.returncode == 0, result.stderr
        records = statuses(report)
        fixed = "dtype" if intensity == "dtype" else (2.0**64, 2.0**65)
        torch.set_num_threads(1)
        for name, image in arrays_written.items():
            stem, ext = name.rsplit(".", 1)
            output = out / f"{stem}_denoised.{ext}"
            written = (
                zarr.open_array(output, mode="r")[:]
                if ext == "zarr"
                else np.load(output)
                if ext == "npy"
                else tifffile.imread(output)
                if ext == "tif"
                else iio.imread(output)
            )
            expected = denoise(image, gray_model, tile_size=None, precision="fp32", device="cpu", intensity_range=fixed)
            assert written.dtype == image.dtype, name
            np.testing.assert_array_equal(written, expected, err_msg=name)
            if image.dtype.kind in "ui":
                info = np.iinfo(image.dtype)
                if label == "high":
                    assert written.max() == info.max, name  # never wrapped to the minimum
                else:
                    assert written.min() == info.min, name
        half = records["half.npy"]
        clipped = any("float16 range" in note and "clipped" in note for note in half["notes"])
        assert clipped == (label == "high"), half["notes"]
        if label == "high":
            assert np.load(out / "half_denoised.npy").max() == np.finfo(np.float16).max
            assert "float16 range" in result.stderr  # the note reaches the log too


# ----------------------------------------------------------------------------------------- class 5
@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs (needs root and mount rights; skipped with the reason otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root and CAP_SYS_ADMIN needed): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_class5_a_full_disk_fails_one_file_cleanly_and_the_batch_goes_on(tmp_path, small_disk, gray_checkpoint):
    import zarr

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    small_tiff(folder / "a_small.tif", shape=(64, 64))
    np.save(folder / "b_big.npy", rng.random((4, 256, 256)).astype(np.float32))  # 1 MiB: cannot fit
    tifffile.imwrite(folder / "c_big.tif", rng.random((4, 256, 256), np.float32), photometric="minisblack")  # 1 MiB
    small_tiff(folder / "d_small.tif", seed=1, shape=(64, 64))
    zarr.create_array(folder / "e.zarr", data=rng.integers(0, 999, (2, 32, 32), dtype=np.uint16), chunks=(1, 32, 32))
    report = tmp_path / "report.json"
    result = run(["denoise", folder, "-o", small_disk, "--model", gray_checkpoint, *FAST, "--report", report])
    assert result.returncode == 1, result.stderr
    assert result.returncode != -7  # not killed by SIGBUS
    records = statuses(report)
    assert {name: r["status"] for name, r in records.items()} == {
        "a_small.tif": "done",
        "b_big.npy": "failed",
        "c_big.tif": "failed",
        "d_small.tif": "done",
        "e.zarr": "done",
    }
    for name in ("b_big.npy", "c_big.tif"):
        error = records[name]["error"]
        assert error.startswith(f"no space left on {small_disk} while writing "), error
        assert "partial output was removed" in error
    names = sorted(p.name for p in small_disk.iterdir())
    assert names == ["a_small_denoised.tif", "d_small_denoised.tif", "e_denoised.zarr"]
    assert tifffile.imread(small_disk / "d_small_denoised.tif").shape == (64, 64)


# ----------------------------------------------------------------------------------------- class 6
def test_class6_resume_keeps_only_outputs_made_from_this_input_model_and_settings(
    tmp_path, gray_checkpoint, rgb_checkpoint
):
    small_tiff(tmp_path / "a.tif", seed=0)
    np.save(tmp_path / "n.npy", np.random.default_rng(1).random((32, 32)).astype(np.float32))
    small_tiff(tmp_path / "p.tif", seed=2)
    inputs = [tmp_path / "a.tif", tmp_path / "n.npy", tmp_path / "p.tif"]
    report = tmp_path / "r.json"
    base = ["denoise", *inputs, "--model", gray_checkpoint, *FAST, "--report", report]
    assert run(base).returncode == 0

    small_tiff(tmp_path / "a.tif", seed=9)  # new content, same size
    os.utime(tmp_path / "a.tif", ns=(1, 1))  # and a time that can only differ
    with open(tmp_path / "n_denoised.npy", "r+b") as handle:  # a truncated output (e.g. copied off a full disk)
        handle.truncate(300)
    kept = digest(tmp_path / "p_denoised.tif")
    result = run(base)
    assert result.returncode == 1, result.stderr
    records = statuses(report)
    assert records["a.tif"]["status"] == "failed" and "the input changed since" in records["a.tif"]["error"]
    assert "pass --overwrite to redo it" in records["a.tif"]["error"]
    assert records["n.npy"]["status"] == "done" and any("incomplete" in n for n in records["n.npy"]["notes"])
    assert np.load(tmp_path / "n_denoised.npy").shape == (32, 32)
    assert records["p.tif"]["status"] == "skipped" and digest(tmp_path / "p_denoised.tif") == kept

    other_model = ["denoise", tmp_path / "p.tif", "--model", rgb_checkpoint, *FAST, "--report", report]
    result = run(other_model)
    assert result.returncode == 1 and "another model file" in statuses(report)["p.tif"]["error"]
    result = run([*base, "--intensity-range", "dtype"])
    assert "settings differ: intensity_range" in statuses(report)["p.tif"]["error"]
    assert digest(tmp_path / "p_denoised.tif") == kept  # refused, not replaced

    result = run([*base, "--overwrite"])
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in statuses(report).values()} == {"done"}


def test_class6_the_dask_engine_refuses_to_resume_onto_a_changed_input(tmp_path, gray_checkpoint, one_torch_thread):
    import zarr

    from napari_clipdenoise.distributed import denoise_zarr
    from napari_clipdenoise.errors import DenoiseCancelled

    rng = np.random.default_rng(6)
    old = rng.integers(0, 4000, (4, 32, 32), dtype=np.uint16)
    source = tmp_path / "in.zarr"
    zarr.create_array(source, data=old, chunks=(1, 32, 32))
    options = dict(axes="ZYX", tile_size=None, precision="fp32", block_size=32, scheduler="sync")
    calls = []

    def cancel():
        return len(calls) >= 2  # after the first block of four

    with pytest.raises(DenoiseCancelled):
        denoise_zarr(
            str(source),
            str(tmp_path / "out.zarr"),
            str(gray_checkpoint),
            cancel=cancel,
            progress=lambda done, total: calls.append(done),
            **options,
        )
    new = rng.integers(0, 4000, old.shape, dtype=np.uint16)
    zarr.open_array(source, mode="r+")[:] = new  # the input changes before the resume
    with pytest.raises(FileExistsError, match="the input changed since"):
        denoise_zarr(str(source), str(tmp_path / "out.zarr"), str(gray_checkpoint), **options)
    report = denoise_zarr(str(source), str(tmp_path / "out.zarr"), str(gray_checkpoint), overwrite=True, **options)
    assert report["complete"] and report["blocks_skipped"] == 0
    expected = denoise(new, gray_checkpoint, axes="ZYX", tile_size=None, precision="fp32")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr", mode="r")[:], expected)


# ----------------------------------------------------------------------------------------- class 7
def _png_header_only(path: Path, width: int, height: int, depth: int = 16, colour: int = 0) -> None:
    """A PNG that declares a size but holds a few bytes of data: only its header may be read."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # 8 GiB of address space: torch still runs


def test_class7_declared_sizes_are_checked_before_allocation_and_a_huge_plane_says_so(tmp_path, gray_checkpoint):
    import zarr

    folder = tmp_path / "in"
    folder.mkdir()
    _png_header_only(folder / "bomb16.png", 20000, 20000)  # 400 Mpx 16-bit in 100 bytes
    zarr.create_array(folder / "huge.zarr", shape=(1, 200000, 200000), chunks=(1, 1024, 1024), dtype="uint16")
    small_tiff(folder / "fine.tif")
    report = tmp_path / "r.json"
    result = run(["denoise", folder, "--model", gray_checkpoint, *FAST, "--report", report, "-q"])
    assert result.returncode == 1, result.stderr
    records = statuses(report)
    assert records["fine.tif"]["status"] == "done"
    png = records["bomb16.png"]["error"]
    assert png.startswith("the PNG file declares 400,000,000 pixels (shape (20000, 20000)") and "--max-pixels" in png
    assert "not a readable" not in png  # refused from its header, before any decoding
    assert "the zarr input declares 40,000,000,000 pixels" in records["huge.zarr"]["error"]
    assert "--max-pixels" in records["huge.zarr"]["error"]
    handed = run(
        ["denoise", folder / "huge.zarr", "-o", tmp_path / "o", "--model", gray_checkpoint, "--scheduler", "local:1"]
    )
    assert handed.returncode == 1 and "the zarr input declares 40,000,000,000 pixels" in handed.stderr  # dask path too

    # limit raised: the PNG now fails the memory check, the zarr plane says it does not fit (not "tile size")
    _png_header_only(folder / "bomb16.png", 60000, 60000)
    result = run(
        ["denoise", folder, "--model", gray_checkpoint, *FAST, "--report", report, "-q", "--max-pixels", "1e11"],
        preexec_fn=_limit_memory,
    )
    records = statuses(report)
    assert "must be decoded in memory" in records["bomb16.png"]["error"], records["bomb16.png"]["error"]
    plane = records["huge.zarr"]["error"]
    assert plane.startswith("out of memory: one plane of 200000 x 200000 px"), plane
    assert "a smaller --tile-size does not help" in plane and "--scheduler" in plane
    assert not any(p.name.startswith(".partial-") for p in folder.iterdir())


def test_class7_the_dask_client_samples_bounded_windows_of_a_large_plane(tmp_path, gray_checkpoint):
    """The client estimates intensities from a few windows: only the chunks under them are read."""
    import zarr
    from zarr.storage import LocalStore

    from napari_clipdenoise.distributed import denoise_zarr
    from napari_clipdenoise.errors import DenoiseCancelled

    class CountingStore(LocalStore):
        reads: set = set()

        async def get(self, key, prototype, byte_range=None):
            if not key.endswith("zarr.json"):
                CountingStore.reads.add(key)
            return await super().get(key, prototype, byte_range)

    path = tmp_path / "plane.zarr"
    array = zarr.create_array(str(path), shape=(1, 8192, 8192), chunks=(1, 512, 512), dtype="uint16")
    array[0, :512, :512] = 1000  # a few real chunks; the rest is the fill value
    array[0, -512:, -512:] = 3000
    store = CountingStore(str(path), read_only=True)
    lazy = zarr.open_array(store=store, mode="r")
    with pytest.raises(DenoiseCancelled):
        denoise_zarr(
            lazy, str(tmp_path / "out.zarr"), str(gray_checkpoint), axes="ZYX", cancel=lambda: True, scheduler="sync"
        )
    chunks = [k for k in CountingStore.reads if k.startswith("c/")]
    assert 0 < len(chunks) <= 64, sorted(chunks)  # 16 windows of 256 px touch at most 4 chunks each
    assert len(chunks) < (8192 // 512) ** 2 / 4  # far from the whole plane's 256 chunks


# ----------------------------------------------------------------------------------------- class 8
def test_class8_traversal_stays_inside_the_tree_and_never_follows_folder_links(tmp_path, gray_checkpoint):
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "sub").mkdir(parents=True)
    outside.mkdir()
    small_tiff(tree / "sub" / "a.tif")
    small_tiff(outside / "x.tif", seed=3)
    (tree / "sub" / "loop").symlink_to("..")  # a loop
    (tree / "ext").symlink_to(outside)  # a way out
    report = tmp_path / "r.json"
    result = run(["denoise", tree, "-r", "--model", gray_checkpoint, *FAST, "--report", report])
    assert result.returncode == 0, result.stderr
    assert list(statuses(report)) == ["a.tif"]
    assert f"{tree / 'ext'}: a symbolic link to a folder, not followed" in result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["x.tif"]  # nothing written outside the tree

    for pattern, recursive in ((f"{tree}/**/*.tif", ["-r"]), (f"{tree}/*/*.tif", [])):
        result = run(["denoise", pattern, *recursive, "--model", gray_checkpoint, *FAST, "--dry-run"])
        assert str(outside) not in result.stdout.replace(f"{tree}/ext/x.tif: reached", "")
        assert "would skip" in result.stdout and "sub/a.tif" in result.stdout
    assert "reached through a symbolic link to a folder outside" in result.stdout

    # -o whose mirrored subfolder is a link leading elsewhere: refused before any work
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside)
    result = run(["denoise", tree, "-r", "-o", out, "--model", gray_checkpoint, *FAST])
    assert result.returncode == 2 and "leads outside" in result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["x.tif"]


# ----------------------------------------------------------------------------------------- class 9
def test_class9_output_into_the_input_store_is_refused_by_one_rule_on_every_path(tmp_path, gray_checkpoint):
    import zarr

    from napari_clipdenoise.distributed import denoise_zarr
    from napari_clipdenoise.formats.safety import check_not_input

    store = tmp_path / "v.zarr"
    zarr.create_array(store, data=np.ones((2, 32, 32), np.uint16), chunks=(1, 32, 32))
    listing = sorted(p.name for p in store.iterdir())
    with pytest.raises(ValueError) as rule:
        check_not_input(store / "v_denoised.zarr", [store])
    with pytest.raises(ValueError) as engine:
        denoise_zarr(str(store), str(store / "v_denoised.zarr"), str(gray_checkpoint))
    assert str(engine.value) == str(rule.value)
    for extra in ([], ["--scheduler", "local:1"]):  # in this process, and handed to the dask engine
        result = run(["denoise", store, "-o", store, "--model", gray_checkpoint, *FAST, *extra])
        assert result.returncode == 2, result.stderr
        assert str(rule.value) in result.stderr
    assert sorted(p.name for p in store.iterdir()) == listing


def test_class9_a_bad_or_unreachable_scheduler_is_one_usage_error_before_any_work(tmp_path, gray_checkpoint):
    import zarr

    for name in ("v1.zarr", "v2.zarr"):
        zarr.create_array(tmp_path / name, data=np.ones((2, 16, 16), np.uint16), chunks=(1, 16, 16))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    for scheduler, expected in (
        (f"tcp://127.0.0.1:{port}", "cannot reach the dask scheduler"),
        ("foo", "is not a scheduler"),
        ("local:0", "N >= 1"),
        ("tcp://127.0.0.1:notaport", "no valid port"),
    ):
        result = run(
            [
                "denoise",
                tmp_path / "v1.zarr",
                tmp_path / "v2.zarr",
                "-o",
                tmp_path / "out",
                "--model",
                gray_checkpoint,
                "--scheduler",
                scheduler,
            ]
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count(expected) == 1, result.stderr  # once for the batch, not once per file
    assert not (tmp_path / "out").exists()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(["uint8", "uint16"]), seed=st.integers(0, 2**16), rgb=st.booleans())
def test_class9_grey_alpha_keeps_its_alpha_bit_for_bit(gray_model, rgb_model, one_torch_thread, dtype, seed, rgb):
    """Property: the alpha sample of a grey+alpha (YXS, 2 samples) image is copied, whatever model and values."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    image = rng.integers(0, top, (16, 24, 2), dtype=dtype, endpoint=True)
    model = rgb_model if rgb else gray_model
    plan = plan_denoise(image, model, axes="YXS", tile_size=None, precision="fp32")
    assert plan.passthrough == (1,) and [g.channels for g in plan.groups] == [(0,)]
    result = denoise(image, model, plan=plan)
    np.testing.assert_array_equal(result[..., 1], image[..., 1])
    assert not np.array_equal(result[..., 0], image[..., 0])


def test_class9_png_alpha_and_palette_through_the_cli(tmp_path, gray_checkpoint):
    import imageio.v3 as iio
    import png
    from PIL import Image

    rng = np.random.default_rng(9)
    grey = rng.integers(0, 255, (32, 40), dtype=np.uint8)
    alpha = np.where(np.arange(40)[None, :] < 20, 0, 255).astype(np.uint8) + np.zeros((32, 1), np.uint8)
    Image.fromarray(np.stack([grey, alpha], -1), "LA").save(tmp_path / "la8.png")
    la16 = np.stack([grey.astype(np.uint16) * 257, alpha.astype(np.uint16) * 200], -1)
    with open(tmp_path / "la16.png", "wb") as handle:
        png.Writer(40, 32, greyscale=True, alpha=True, bitdepth=16).write(handle, la16.reshape(32, 80))
    colours = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(colours).convert("P", palette=Image.ADAPTIVE, colors=16).save(tmp_path / "pal.png")
    report = tmp_path / "r.json"
    result = run(["denoise", tmp_path, "--model", gray_checkpoint, *FAST, "--report", report])
    assert result.returncode == 0, result.stderr

    def read(path):  # pypng: Pillow (imageio) reads a 16-bit grey+alpha PNG as 8-bit RGBA
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        return np.vstack([np.asarray(r) for r in rows]).reshape(height, width, info["planes"]), info["bitdepth"]

    for name, depth in (("la8", 8), ("la16", 16)):
        (source, source_depth), (output, output_depth) = (
            read(tmp_path / f"{name}.png"),
            read(tmp_path / f"{name}_denoised.png"),
        )
        assert output.shape == source.shape == (32, 40, 2) and output_depth == source_depth == depth
        np.testing.assert_array_equal(output[..., 1], source[..., 1])  # alpha untouched
        assert not np.array_equal(output[..., 0], source[..., 0])  # grey denoised
    palette = statuses(report)["pal.png"]
    assert palette["shape"] == palette["output_shape"] == [32, 40, 3]
    assert any("palette (indexed-colour) PNG" in note for note in palette["notes"])
    assert iio.imread(tmp_path / "pal_denoised.png").shape == (32, 40, 3)
