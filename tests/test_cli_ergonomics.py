"""Issue 14: what users of cellpose, CARE, careamics and n2v command lines expect, one CLI test per point.

Real ``clipdenoise`` subprocesses on real files; the model is a seeded random-weight
checkpoint (outputs are not denoised images).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_clipdenoise import denoise
from napari_clipdenoise.formats import read_provenance

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "napari_clipdenoise.cli"]
FAST = ["--tile-size", "none", "--precision", "fp32", "--device", "cpu"]


def run(args, timeout=240, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, check=False, **kwargs
    )


def records(report: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in json.loads(report.read_text())["files"]}


def tiff(path: Path, shape=(32, 48), seed=0, **kwargs) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 60000, shape, dtype=np.uint16)
    tifffile.imwrite(path, data, **kwargs)
    return data


# ---------------------------------------------------------------------------------------------- 1
def test_point1_stray_files_are_skipped_with_the_reason_and_left_out_folders_are_named(tmp_path, gray_checkpoint):
    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    tiff(folder / "a.tif")
    tiff(folder / "sub" / "b.tif", seed=1)
    (folder / "notes.txt").write_text("acquisition notes")
    report = tmp_path / "r.json"
    result = run(["denoise", folder, f"{folder}/**/*.tif", "--model", gray_checkpoint, *FAST, "--report", report])
    assert result.returncode == 0, result.stderr  # a stray file does not make the batch fail
    assert f"skipped {folder / 'notes.txt'}: not an image (unsupported file type .txt" in result.stderr
    assert f"{folder}: 1 subfolder(s) not searched; pass -r/--recursive" in result.stderr
    assert "'**' matches a single folder level without -r/--recursive" in result.stderr
    assert {name: r["status"] for name, r in records(report).items()} == {
        "a.tif": "done",
        "notes.txt": "skipped",
        "b.tif": "done",  # matched by the pattern's one level
    }
    named = run(["denoise", folder / "notes.txt", "--model", gray_checkpoint, *FAST])
    assert named.returncode == 1 and "unsupported file type .txt" in named.stderr  # named explicitly: an error


# ---------------------------------------------------------------------------------------------- 2
def test_point2_tile_size_256_alone_works_end_to_end(tmp_path, gray_checkpoint):
    image = tiff(tmp_path / "wide.tif", shape=(200, 296))
    result = run(
        ["denoise", tmp_path / "wide.tif", "--model", gray_checkpoint, "--tile-size", "256", "--device", "cpu"]
    )
    assert result.returncode == 0, result.stderr
    output = tmp_path / "wide_denoised.tif"
    assert tifffile.imread(output).shape == image.shape
    parameters = read_provenance(output)["parameters"]
    assert parameters["tile_size"] == 256 and parameters["overlap"] == 240  # derived: tile - 16
    assert re.search(r"\d+ tile\(s\) of \d+ x \d+ px, overlap 240 px", result.stderr), result.stderr


# ---------------------------------------------------------------------------------------------- 3
def test_point3_suffix_output_format_channels_quiet_verbose_log_dry_run_and_gpu_alias(tmp_path, gray_checkpoint):
    import imageio.v3 as iio
    import zarr

    rng = np.random.default_rng(3)
    iio.imwrite(tmp_path / "photo.jpg", rng.integers(0, 255, (32, 48, 3), dtype=np.uint8), quality=90)
    iio.imwrite(tmp_path / "grey.png", rng.integers(0, 255, (32, 48), dtype=np.uint8))
    cyx = tiff(tmp_path / "cyx.tif", shape=(3, 32, 48), photometric="minisblack", metadata={"axes": "CYX"})

    # lossless float32 TIFF from a JPEG and a PNG, named <stem>_dn.tif; -q prints nothing
    args = [tmp_path / "photo.jpg", tmp_path / "grey.png", "--model", gray_checkpoint, *FAST]
    result = run(["denoise", *args, "--suffix", "_dn", "--output-format", "tif", "--output-dtype", "float32", "-q"])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for stem, shape in (("photo", (32, 48, 3)), ("grey", (32, 48))):
        written = tifffile.imread(tmp_path / f"{stem}_dn.tif")
        assert written.shape == shape and written.dtype == np.float32
        assert read_provenance(tmp_path / f"{stem}_dn.tif")["parameters"]["output_dtype"] == "float32"

    # one channel of three into a zarr array, with -v and a log
    log = tmp_path / "run.log"
    args = [tmp_path / "cyx.tif", "--model", gray_checkpoint, *FAST, "--output-format", "zarr", "--log", log]
    result = run(["denoise", *args, "--channels", "1", "-v"])
    assert result.returncode == 0, result.stderr
    written = zarr.open_array(tmp_path / "cyx_denoised.zarr", mode="r")[:]
    np.testing.assert_array_equal(written[[0, 2]], cyx[[0, 2]])
    assert not np.array_equal(written[1], cyx[1])
    assert "channels 1 denoised, the others copied unchanged" in result.stderr  # -v shows the plan
    lines = log.read_text().splitlines()
    assert lines[0].startswith("# clipdenoise log")
    assert any(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ info \[1/1\] cyx.tif: done", line) for line in lines)
    again = run(["denoise", *args, "--channels", "1", "-q"])  # the same log is appended to
    assert again.returncode == 0 and len(log.read_text().splitlines()) > len(lines)
    refused = run(["denoise", *args[:-1], tmp_path / "grey.png"])  # --log onto an image: never
    assert refused.returncode == 2 and "--log" in refused.stderr and "never replaced" in refused.stderr

    # a dry run says what would happen and writes nothing
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(["denoise", tmp_path, "--model", gray_checkpoint, *FAST, "--dry-run", "-o", tmp_path / "new"])
    assert result.returncode == 0, result.stderr
    assert f"would denoise  {tmp_path / 'photo.jpg'} -> {tmp_path / 'new' / 'photo_denoised.jpg'}" in result.stdout
    assert "would skip" in result.stdout and "run.log" in result.stdout  # a non-image, found in the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    # --device gpu is --device cuda
    import torch

    if not torch.cuda.is_available():
        result = run(["denoise", tmp_path / "grey.png", "--model", gray_checkpoint, "--device", "gpu", "--overwrite"])
        assert result.returncode == 2
        assert "--device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or --device auto" in (
            result.stderr
        )


# ---------------------------------------------------------------------------------------------- 4
def test_point4_tta_on_the_command_line_equals_the_core(tmp_path, gray_checkpoint, gray_model, one_torch_thread):
    image = tiff(tmp_path / "t.tif", shape=(32, 48))
    result = run(["denoise", tmp_path / "t.tif", "--model", gray_checkpoint, *FAST, "--tta", "-v"])
    assert result.returncode == 0, result.stderr
    assert "test-time augmentation" in result.stderr
    expected = denoise(image, gray_model, tta=True, tile_size=None, precision="fp32", device="cpu")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "t_denoised.tif"), expected)
    assert read_provenance(tmp_path / "t_denoised.tif")["parameters"]["tta"] is True
    result = run(["denoise", tmp_path / "t.tif", "--model", gray_checkpoint, "--tta", "--scheduler", "local"])
    assert result.returncode == 2 and "--tta is not available with --scheduler" in result.stderr


# ---------------------------------------------------------------------------------------------- 5
def test_point5_messages_speak_cli_and_name_what_happened(tmp_path, gray_checkpoint, isolated_model_cache):
    # tifffile's own warning becomes a note; the axis letter it chose is explained; tiles after balancing
    tifffile.imwrite(tmp_path / "ij.tif", np.zeros((2, 40, 300), np.uint16) + 7, imagej=True, metadata={"axes": "ZYX"})
    data = bytearray((tmp_path / "ij.tif").read_bytes())
    for key in (b"images=2", b"slices=2"):
        at = data.find(key)
        data[at : at + len(key)] = key[:-1] + b"7"  # metadata that does not match the pages
    (tmp_path / "ij.tif").write_bytes(bytes(data))
    report = tmp_path / "r.json"
    args = ["--model", gray_checkpoint, "--precision", "fp32", "--device", "cpu", "--report", report]
    result = run(["denoise", tmp_path / "ij.tif", "--tile-size", "1024", *args])
    assert result.returncode == 0, result.stderr
    assert "<tifffile" not in result.stderr and "tifffile.py" not in result.stderr
    assert any("(tifffile) reported: ImageJ series metadata invalid" in n for n in records(report)["ij.tif"]["notes"])
    assert "axes IYX (ImageJ metadata; I: a sequence of pages, processed plane by plane; pass --axes" in result.stderr
    assert "tiles up to 1024 px" in result.stderr  # the header: the largest tile
    assert "1 tile(s) of 48 x 304 px, overlap 256 px (balanced; --tile-size 1024)" in result.stderr

    # a URL import that fails says what failed, in words
    import functools
    import http.server
    import socket
    import threading

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    result = run(["models", "import", f"http://127.0.0.1:{port}/net_g_latest.pth", "--name", "fromurl"])
    assert result.returncode == 2 and "<urlopen error" not in result.stderr
    # in words, naming the host and what happened (the model store's download error)
    assert "cannot reach 127.0.0.1" in result.stderr
    assert "refused" in result.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/missing.pth"
        result = run(["models", "import", url, "--name", "fromurl"])
    finally:
        server.shutdown()
    assert result.returncode == 2 and "not found (HTTP 404)" in result.stderr

    # models info FILE says it is a file; models list shows every model's channels
    result = run(["models", "info", gray_checkpoint])
    assert result.returncode == 0 and "a checkpoint file" in result.stdout and "installed at" not in result.stdout
    assert run(["models", "import", gray_checkpoint, "--name", "mygrey"]).returncode == 0
    listing = run(["models", "list"]).stdout
    assert re.search(r"mygrey\s+1-ch\s+installed", listing), listing
    assert re.search(r"gaussian15\s+3-ch", listing) and re.search(r"ldct\s+1-ch", listing)


# ---------------------------------------------------------------------------------------------- 6
def test_point6_a_redirected_log_gets_plain_lines(tmp_path, gray_checkpoint):
    folder = tmp_path / "nine"
    folder.mkdir()
    for index in range(9):
        tiff(folder / f"f{index}.tif", shape=(16, 16), seed=index)
    with open(tmp_path / "stderr.log", "w") as log:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        command = [*CLI, "denoise", str(folder), "--model", str(gray_checkpoint), *FAST]
        result = subprocess.run(command, stderr=log, stdout=subprocess.DEVNULL, env=env, timeout=240, check=False)
    assert result.returncode == 0
    text = (tmp_path / "stderr.log").read_text()
    assert "\r" not in text and "\x1b" not in text  # no cursor control
    lines = text.splitlines()
    assert len(lines) <= 2 + 2 * 9 + 1, text  # header, two lines per file, the summary
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 9
    for index, line in enumerate(progress, start=1):
        assert re.fullmatch(rf"\[{index}/9\] f{index - 1}\.tif: done( in \d+\.\d s)?", line), line
    assert lines[-1].startswith("9 done, 0 skipped, 0 failed of 9")


# ---------------------------------------------------------------------------------------------- 7
def test_point7_the_readme_snippet_runs_and_documents_torch_exit_codes_commands_and_extras(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "snippet.py").write_text(snippet)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    done, total = map(int, result.stdout.splitlines()[-1].split())  # the progress callback of the 3-plane stack
    assert done == total > 0

    assert "--index-url https://download.pytorch.org/whl/cpu" in readme and "CUDA build" in readme
    from napari_clipdenoise.cli import common

    for code in (common.EXIT_OK, common.EXIT_FAILED, common.EXIT_USAGE, common.EXIT_INTERRUPTED, 143):
        assert re.search(rf"\b{code} (every|some|nothing|interrupted|terminated)", readme), code
    demo = (ROOT / "scripts" / "run_demo.sh").read_text()
    assert "exit 2" in demo and "bundled IDF model when the paper's weights" in readme.replace("\n", " ")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    missing = [name for name in extras if f"`{name}`" not in readme]
    assert not missing, f"extras not in the README: {missing}"
    for module in ("napari_clipdenoise.training.train", "napari_clipdenoise.training.evaluate"):
        assert f"python -m {module}" in readme
        helped = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env, timeout=120
        )
        assert helped.returncode == 0, helped.stderr
