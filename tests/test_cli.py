"""Acceptance tests of the ``clipdenoise`` command: real subprocesses on real files in a temp folder.

The model is a tiny seeded random-weight checkpoint (installed as ``gaussian15`` in
the isolated cache, or passed by path): outputs are not denoised images, the tests
check the batch machinery (formats, metadata, provenance, failures, resuming, kills).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clipdenoise.formats import read_provenance

CLI = [sys.executable, "-m", "napari_clipdenoise.cli"]
FAST = ["--tile-size", "none", "--precision", "fp32", "--device", "cpu"]


def cli_env() -> dict:
    """The test's environment (it holds the isolated CLIPDENOISE_CACHE_DIR), one torch thread.

    On a busy 2-core machine two torch threads per process are ~10x slower than one.
    """
    return dict(os.environ, OMP_NUM_THREADS="1")


def run(args, timeout=240, **kwargs):
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=cli_env(), timeout=timeout, check=False, **kwargs
    )


def console_script() -> str:
    script = Path(sys.executable).with_name("clipdenoise")
    if not script.is_file():
        pytest.skip("the clipdenoise console script is not installed (pip install -e .)")
    return str(script)


def make_format_zoo(folder: Path, rng) -> dict[str, np.ndarray]:
    """One small file per supported format; returns the arrays written, by file name."""
    import imageio.v3 as iio
    import zarr

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "gray.png": rng.integers(0, 255, (48, 64), dtype=np.uint8),
        "photo.jpg": rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
        "stack.tif": rng.integers(0, 60000, (3, 48, 64), dtype=np.uint16),
        "cells.ome.tif": rng.integers(0, 4000, (2, 48, 64), dtype=np.uint16),
        "array.npy": rng.random((48, 64)).astype(np.float32),
        "volume.zarr": rng.integers(0, 1000, (2, 48, 64), dtype=np.uint16),
    }
    iio.imwrite(folder / "gray.png", arrays["gray.png"])
    iio.imwrite(folder / "photo.jpg", arrays["photo.jpg"], quality=95)
    arrays["photo.jpg"] = iio.imread(folder / "photo.jpg")
    tifffile.imwrite(
        folder / "stack.tif",
        arrays["stack.tif"],
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"},
    )
    tifffile.imwrite(
        folder / "cells.ome.tif",
        arrays["cells.ome.tif"],
        ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "Channel": {"Name": ["a", "b"]}},
    )
    np.save(folder / "array.npy", arrays["array.npy"])
    volume = zarr.create_array(
        folder / "volume.zarr", shape=(2, 48, 64), chunks=(1, 32, 32), dtype="uint16", dimension_names=("z", "y", "x")
    )
    volume[:] = arrays["volume.zarr"]
    return arrays


def read_any(path: Path) -> np.ndarray:
    import imageio.v3 as iio
    import zarr

    if path.suffix == ".tif":
        return tifffile.imread(path)
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".zarr":
        return zarr.open_array(path, mode="r")[:]
    return iio.imread(path)


def test_missing_model_gives_the_install_hint_fast_without_torch_or_reading_inputs(tmp_path):
    fifo = tmp_path / "never_read.tif"
    os.mkfifo(fifo)  # opening it would block: proves the inputs are not touched
    code = (
        "import sys; from napari_clipdenoise.cli import main; rc = main(sys.argv[1:]);"
        " print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, "denoise", str(fifo), "--model", "gaussian15"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert "model 'gaussian15' is not installed" in result.stderr
    assert "clipdenoise models import PATH/TO/net_g_latest.pth --name gaussian15" in result.stderr
    assert "torch imported: False" in result.stdout
    print(f"missing-model failure took {elapsed:.2f} s")  # measured in benchmarks, not asserted

    result = run(["denoise", fifo, "--model", tmp_path / "nowhere.safetensors"], timeout=60)
    assert result.returncode == 2 and "checkpoint file not found" in result.stderr


def test_every_format_keeps_shape_dtype_metadata_and_a_rerun_skips(tmp_path, installed_gaussian15, rng):
    arrays = make_format_zoo(tmp_path / "in", rng)
    report = tmp_path / "report.json"
    args = ["denoise", tmp_path / "in", "-o", tmp_path / "out", "--report", report, *FAST]
    result = subprocess.run(
        [console_script(), *map(str, args)], capture_output=True, text=True, env=cli_env(), timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "6 done, 0 skipped, 0 failed of 6" in result.stderr
    assert "axes ZYX (ImageJ metadata)" in result.stderr and "axes CYX (OME metadata)" in result.stderr

    out = tmp_path / "out"
    for name, original in arrays.items():
        stem, _, ext = name.partition(".")
        output = out / f"{stem}_denoised.{ext}"
        denoised = read_any(output)
        assert denoised.shape == original.shape and denoised.dtype == original.dtype, name
        assert not np.array_equal(denoised, original), f"{name} was copied, not processed"
        provenance = read_provenance(output)
        assert provenance["model"]["name"] == "gaussian15" and len(provenance["model"]["sha256"]) == 64, name
        assert provenance["parameters"]["device"] == "cpu" and provenance["parameters"]["precision"] == "fp32"
        assert provenance["input"]["path"].endswith(name)
    with tifffile.TiffFile(out / "stack_denoised.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.pages[0].resolution == (4.0, 4.0)
        assert (tif.imagej_metadata["spacing"], tif.imagej_metadata["unit"]) == (1.5, "um")
    with tifffile.TiffFile(out / "cells_denoised.ome.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert tif.is_ome and pixels["PhysicalSizeX"] == 0.25 and [c["Name"] for c in pixels["Channel"]] == ["a", "b"]
    assert (out / "array_denoised.npy.json").is_file() and (out / "photo_denoised.jpg.json").is_file()
    assert not (out / "stack_denoised.tif.json").exists()  # TIFF holds its provenance itself

    records = {Path(r["input"]).name: r for r in json.loads(report.read_text())["files"]}
    assert {r["status"] for r in records.values()} == {"done"}
    assert records["stack.tif"]["shape"] == [3, 48, 64] and records["stack.tif"]["dtype"] == "uint16"
    assert records["volume.zarr"]["output"] == str(out / "volume_denoised.zarr")

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run(args)
    assert again.returncode == 0, again.stderr
    assert "0 done, 6 skipped, 0 failed of 6" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "report.json"} == before


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path, gray_checkpoint, rng):
    import imageio.v3 as iio

    folder = tmp_path / "batch"
    folder.mkdir()
    iio.imwrite(folder / "good1.png", rng.integers(0, 255, (32, 48), dtype=np.uint8))
    np.save(folder / "good2.npy", rng.random((32, 48)).astype(np.float32))
    (folder / "corrupt.tif").write_bytes(b"II*\x00" + b"\xff" * 60)
    (folder / "empty.tif").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    result = run(["denoise", folder, "--model", gray_checkpoint, "--report", tmp_path / "r.json", *FAST])
    assert result.returncode == 1
    assert (folder / "good1_denoised.png").is_file() and (folder / "good2_denoised.npy").is_file()
    failures = result.stderr.split("input(s) failed:")[1]
    assert f"{folder / 'corrupt.tif'}: not a readable TIFF file" in failures
    assert f"{folder / 'empty.tif'}: the file is empty (0 bytes)" in failures
    # a file found in a folder that is not an image is listed as skipped, with the reason (issue 14)
    assert f"skipped {folder / 'notes.txt'}: not an image (unsupported file type .txt" in result.stderr
    assert "notes.txt" not in failures
    assert "2 done, 1 skipped, 2 failed of 5" in result.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert statuses == {
        "corrupt.tif": "failed",
        "empty.tif": "failed",
        "notes.txt": "skipped",
        "good1.png": "done",
        "good2.npy": "done",
    }
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def _start_and_wait_for_partial(args, folder: Path) -> subprocess.Popen:
    # A shell without job control starts background commands (``cmd &``) with SIGINT
    # ignored, and children inherit that: Python then installs no KeyboardInterrupt
    # handler and the CLI is (rightly) not interruptible. Give the child Ctrl-C's
    # default action by handling SIGINT here while it starts (exec resets handlers).
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    deadline = time.monotonic() + 180
    while not any(p.name.startswith(".partial-") for p in folder.iterdir()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the run never started writing (rc {process.returncode}): {err[-2000:]}")
        time.sleep(0.02)
    return process


def test_sigint_and_sigkill_mid_file_leave_no_partial_output_and_a_rerun_completes(tmp_path, rgb_checkpoint, rng):
    folder = tmp_path / "stacks"
    folder.mkdir()
    stack = rng.integers(0, 60000, (6, 96, 96), dtype=np.uint16)
    tifffile.imwrite(folder / "big.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    output = folder / "big_denoised.tif"
    slow = [
        "denoise",
        folder / "big.tif",
        "--model",
        rgb_checkpoint,
        "--tile-size",
        "32",
        "--overlap",
        "16",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    ]

    process = _start_and_wait_for_partial(slow, folder)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert sorted(p.name for p in folder.iterdir()) == ["big.tif"]  # temp file removed, no output

    process = _start_and_wait_for_partial(slow, folder)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()  # at most a hidden .partial-<pid>-... file, never the output name

    result = run(["denoise", folder, "--model", rgb_checkpoint, *FAST])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["big.tif", "big_denoised.tif"]  # stale temp cleaned
    denoised = tifffile.imread(output)
    assert denoised.shape == stack.shape and denoised.dtype == stack.dtype
