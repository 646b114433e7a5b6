"""The ``clipdenoise`` sub-commands called in-process through ``main`` (the console script's entry point)."""

from __future__ import annotations

import json
import socket
import sys
import types

import numpy as np
import pytest

from napari_clipdenoise.cli import main


@pytest.fixture
def png_input(tmp_path, rng):
    import imageio.v3 as iio

    path = tmp_path / "in" / "image.png"
    path.parent.mkdir()
    iio.imwrite(path, rng.integers(0, 255, (32, 32), dtype=np.uint8))
    return path


def test_models_import_list_info_path_remove(tmp_path, rgb_checkpoint, gray_checkpoint, capsys, isolated_model_cache):
    from napari_clipdenoise.model.testing import write_reference_checkpoint

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"model cache: {isolated_model_cache}" in listing and "gaussian15" in listing and "not installed" in listing
    assert "clipdenoise models import PATH/TO/net_g_latest.pth --name gaussian15" in listing

    assert main(["models", "import", str(rgb_checkpoint), "--name", "gaussian15"]) == 0
    target = isolated_model_cache / "gaussian15.safetensors"
    assert f"installed 'gaussian15' at {target}" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert f"installed ({target})" in capsys.readouterr().out
    assert main(["models", "path"]) == 0 and capsys.readouterr().out.strip() == str(isolated_model_cache)
    assert main(["models", "path", "gaussian15"]) == 0 and capsys.readouterr().out.strip() == str(target)
    assert main(["models", "info", "gaussian15"]) == 0
    info = capsys.readouterr().out
    assert "installed at" in info and "weights_sha256" in info and "file sha256" in info

    assert main(["models", "import", str(rgb_checkpoint), "--name", "gaussian15"]) == 2
    assert "already installed" in capsys.readouterr().err
    assert main(["models", "import", str(gray_checkpoint), "--name", "gaussian15", "--overwrite"]) == 2
    assert "1-channel model but 'gaussian15' is a 3-channel model" in capsys.readouterr().err
    assert main(["models", "import", str(rgb_checkpoint), "--name", "x", "--sha256", "0" * 64]) == 2
    assert "sha256 is" in capsys.readouterr().err

    reference = tmp_path / "net_g_latest.pth"
    write_reference_checkpoint(reference, 3, seed=3)
    assert main(["models", "import", str(reference), "--name", "mine"]) == 0
    capsys.readouterr()
    assert main(["models", "remove", "mine"]) == 0 and not (isolated_model_cache / "mine.safetensors").exists()
    assert main(["models", "info", "nonexistent"]) == 2
    assert "Known names" in capsys.readouterr().err


def test_info_prints_versions_devices_and_cache(capsys, isolated_model_cache):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "napari-clipdenoise" in out and "torch" in out and "tifffile" in out
    assert "devices: cpu" in out and "default device:" in out
    assert f"model cache: {isolated_model_cache}" in out


def test_unwritable_output_folder_fails_before_any_work(tmp_path, png_input, installed_gaussian15, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["denoise", str(png_input), "-o", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "-o OUTDIR" in err
    assert sorted(p.name for p in png_input.parent.iterdir()) == ["image.png"]


def test_bad_options_fail_before_any_work(png_input, installed_gaussian15, capsys):
    assert main(["denoise", str(png_input), "--tile-size", "32", "--overlap", "32"]) == 2
    assert "--overlap (32) must be smaller than --tile-size (32)" in capsys.readouterr().err
    assert main(["denoise", str(png_input), "--output-dtype", "complex64"]) == 2
    assert "integer or float" in capsys.readouterr().err
    assert main(["denoise", str(png_input), "--tile-size", "30"]) == 2
    assert "--tile-size must be a positive multiple of 16" in capsys.readouterr().err
    assert main(["denoise", str(png_input), "--device", "cuda:7"]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err


def test_wrong_axes_and_unwritable_dtype_fail_per_file(png_input, installed_gaussian15, capsys):
    assert main(["denoise", str(png_input), "--axes", "ZYX", "-q"]) == 1
    assert "axes 'ZYX' has 3 letters but the image has 2 dimensions" in capsys.readouterr().err
    assert main(["denoise", str(png_input), "--output-dtype", "float32", "-q"]) == 1
    assert "PNG files hold uint8 or uint16 pixels, not float32" in capsys.readouterr().err
    assert sorted(p.name for p in png_input.parent.iterdir()) == ["image.png"]


def test_scheduler_without_the_dask_engine_says_what_to_do(tmp_path, installed_gaussian15, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "napari_clipdenoise.distributed", None)  # import raises ImportError
    assert main(["denoise", str(tmp_path / "v.zarr"), "--scheduler", "local:2"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler needs the dask block engine" in err and "run without --scheduler" in err


def test_scheduler_hands_zarr_inputs_to_denoise_zarr(tmp_path, rgb_checkpoint, monkeypatch, capsys):
    """The contract with napari_clipdenoise.distributed (issue 6): paths, model spec and the core's options."""
    import zarr

    zarr.create_array(tmp_path / "v.zarr", shape=(2, 32, 32), chunks=(1, 32, 32), dtype="uint16")[:] = 7
    calls = []
    engine = types.ModuleType("napari_clipdenoise.distributed")

    def denoise_zarr(source, output, model, **options):
        calls.append((source, output, model, options))
        options["progress"](1, 1)

    engine.denoise_zarr = denoise_zarr
    monkeypatch.setitem(sys.modules, "napari_clipdenoise.distributed", engine)
    # the address is checked once before any work (issue 12): something must listen there
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    argv = [
        "denoise",
        str(tmp_path / "v.zarr"),
        "--model",
        str(rgb_checkpoint),
        "--scheduler",
        address,
        "--tile-size",
        "64",
        "--overlap",
        "16",
        "--precision",
        "fp32",
        "-q",
    ]
    with listener:
        assert main(argv) == 0, capsys.readouterr().err
        # a rerun is handed over again (the engine resumes unfinished blocks), --overwrite and --axes are passed on
        assert main([*argv, "--overwrite", "--axes", "zyx"]) == 0
    ((source, output, model, options), second) = calls
    assert (source, output, model) == (str(tmp_path / "v.zarr"), str(tmp_path / "v_denoised.zarr"), str(rgb_checkpoint))
    from napari_clipdenoise.inference.options import InferenceOptions

    assert options == {
        "scheduler": address,
        "axes": None,
        # as given: each worker resolves device, precision and batch size for its own hardware
        "options": InferenceOptions(tile_size=64, overlap=16, device="auto", precision="fp32"),
        "overwrite": False,
        "progress": options["progress"],
    }
    assert second[3]["overwrite"] is True and second[3]["axes"] == "ZYX"


def test_models_import_from_an_http_url_on_loopback(rgb_checkpoint, capsys, isolated_model_cache):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(rgb_checkpoint.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{rgb_checkpoint.name}"
        assert main(["models", "import", url, "--name", "web"]) == 0, capsys.readouterr().err
        assert (isolated_model_cache / "web.safetensors").is_file()
        assert main(["models", "import", url + ".missing", "--name", "web2"]) == 2
        assert "404" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_scheduler_sync_runs_the_real_dask_engine(tmp_path, rgb_checkpoint, capsys, one_torch_thread):
    """End to end with napari_clipdenoise.distributed in this process (scheduler 'sync'), then a resuming rerun."""
    import zarr

    pytest.importorskip("dask")
    volume = zarr.create_array(tmp_path / "v.zarr", shape=(2, 32, 48), chunks=(1, 32, 32), dtype="uint16")
    volume[:] = np.random.default_rng(0).integers(0, 1000, (2, 32, 48))
    report = tmp_path / "r.json"
    argv = [
        "denoise",
        str(tmp_path / "v.zarr"),
        "--model",
        str(rgb_checkpoint),
        "--scheduler",
        "sync",
        "--tile-size",
        "none",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "-q",
        "--report",
        str(report),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert main(argv) == 0, capsys.readouterr().err
    out = zarr.open_array(tmp_path / "v_denoised.zarr", mode="r")
    assert out.shape == (2, 32, 48) and out.dtype == np.uint16 and np.any(out[:] != volume[:])
    (record,) = json.loads(report.read_text())["files"]
    assert record["status"] == "done" and record["output_shape"] == [2, 32, 48]
    assert record["notes"][-1].startswith("blocks done 0, skipped ")  # the rerun found every block finished

    # --output-dtype and --intensity-range reach the dask engine too
    other = tmp_path / "float"
    assert main([*argv, "-o", str(other), "--output-dtype", "float32", "--intensity-range=0,4000"]) == 0
    as_float = zarr.open_array(other / "v_denoised.zarr", mode="r")
    assert as_float.dtype == np.float32 and as_float.shape == (2, 32, 48)


def test_intensity_range_reaches_the_core_and_the_provenance(png_input, installed_gaussian15, capsys):
    from napari_clipdenoise.formats import read_provenance

    with pytest.raises(SystemExit):
        main(["denoise", str(png_input), "--intensity-range", "high,low"])
    assert "LOW,HIGH" in capsys.readouterr().err
    argv = ["denoise", str(png_input), "--intensity-range=-10,300", "--tile-size", "none", "--precision", "fp32", "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    provenance = read_provenance(png_input.with_name("image_denoised.png"))
    assert provenance["parameters"]["intensity_range"] == [-10.0, 300.0]
    other = png_input.parent.parent / "auto"
    assert main(["denoise", str(png_input), "-o", str(other), "--tile-size", "none", "--precision", "fp32", "-q"]) == 0
    import imageio.v3 as iio

    assert np.any(iio.imread(other / "image_denoised.png") != iio.imread(png_input.with_name("image_denoised.png")))
