"""IDF as a second model family: bundled, loaded by name, installed from the authors' .ckpt, on every face."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_clipdenoise import denoise, install_model, load_model
from napari_clipdenoise.errors import CheckpointError
from napari_clipdenoise.inference.options import OptionError
from napari_clipdenoise.inference.pipeline import ImageWindow
from napari_clipdenoise.model.sources import parse_model_source

DEMO = Path(__file__).parent / "data" / "idf_demo"


def _authors(name: str) -> tuple[np.ndarray, np.ndarray]:
    return iio.imread(DEMO / "noisy" / f"{name}.png"), iio.imread(DEMO / "denoised_by_authors" / f"{name}.png")


def _agreement(output: np.ndarray, reference: np.ndarray) -> float:
    """Share of values within one grey level of the authors' (they truncated clamp(y, 0, 1) * 255 to uint8)."""
    truncated = np.floor(np.clip(output, 0, 255) + 1e-6).astype(np.int16)
    return float((np.abs(truncated - reference.astype(np.int16)) <= 1).mean())


def test_the_bundled_model_loads_by_name_offline():
    source = parse_model_source("idf")
    assert source.kind == "bundled" and source.loadable and source.path.is_file()
    model = load_model("idf")
    assert model.family == "idf" and model.in_channels == 3
    record = model.provenance()
    assert record["family"] == "idf" and record["license"] == "Apache-2.0" and "ICCV 2025" in record["citation"]
    assert model.sha256 == "a40ac99b1410dd99facbed0720de5cdbb2f2edbbf8a960bee05d4536e0f89408"  # the authors' .ckpt


@pytest.mark.parametrize("tile_size", [None, 96])
def test_denoise_with_idf_reproduces_the_authors_through_the_pipeline(tile_size):
    """uint8 in, float out on 0..255: whole plane and the exact streamed tiles both match the authors."""
    noisy, reference = _authors("Smartphone")
    output = denoise(noisy, "idf", output_dtype="float32", tile_size=tile_size)
    assert output.shape == noisy.shape
    assert _agreement(output, reference) >= 0.99


def test_grayscale_gets_a_note_and_the_same_shape(caplog):
    from napari_clipdenoise.inference.pipeline import plan_denoise

    gray = np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)
    plan = plan_denoise(gray, load_model("idf"))
    assert any("grayscale" in note and "IDF" in note for note in plan.notes)
    assert denoise(gray, "idf").shape == gray.shape


def test_idf_precision_rules_and_whole_plane_windows():
    image = np.random.default_rng(1).random((24, 24, 3), dtype=np.float32)
    with pytest.raises(OptionError, match="fp16 is not available for the IDF model"):
        denoise(image, "idf", precision="fp16", device="cpu")
    with pytest.raises(OptionError, match="needs whole planes"):
        denoise(image, "idf", window=ImageWindow(48, 48, 0, 24))
    whole = denoise(image, "idf", window=ImageWindow(24, 24, 0, 0))
    np.testing.assert_array_equal(whole, denoise(image, "idf"))


def _lightning_ckpt(path: Path) -> Path:
    """A file laid out like the authors' pretrained_models/*.ckpt: Lightning dict, configuration objects."""
    from safetensors.torch import load_file

    from napari_clipdenoise.model.idf import BUNDLED_WEIGHTS

    state = {"model." + k: v for k, v in load_file(str(BUNDLED_WEIGHTS)).items()}
    checkpoint = {"epoch": 3, "state_dict": state, "hyper_parameters": {"lr": 1e-3, "name": "idf"}}
    torch.save(checkpoint, path)
    return path


def test_the_authors_ckpt_installs_under_its_registry_name(tmp_path):
    ckpt = _lightning_ckpt(tmp_path / "idf_gp.ckpt")
    target = install_model(ckpt, "idf_gp")
    model = load_model("idf_gp")
    assert model.family == "idf" and model.path == target
    assert model.metadata["format"] == "napari-clipdenoise" and model.metadata["family"] == "idf"
    image = np.random.default_rng(2).random((32, 40, 3), dtype=np.float32)
    np.testing.assert_array_equal(denoise(image, model), denoise(image, "idf"))


def test_a_clip_checkpoint_is_refused_under_an_idf_name(rgb_checkpoint):
    with pytest.raises(CheckpointError, match="is a 'clip' network but 'idf_gp' is a 'idf' model"):
        install_model(rgb_checkpoint, "idf_gp")


def test_cli_denoises_with_the_bundled_model(tmp_path):
    noisy, reference = _authors("Smartphone")
    iio.imwrite(tmp_path / "phone.png", noisy)
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "napari_clipdenoise.cli", "denoise", str(tmp_path / "phone.png"), "-m", "idf"]
    result = subprocess.run([*command, "--report", str(tmp_path / "r.json")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "on cpu, fp32" in result.stderr  # IDF runs fp32 unless bf16 is asked for
    # the header and the file's line say how IDF runs (whole planes, exact), not CLIP's tile overlap
    assert "whole planes (IDF uses whole-image statistics; streamed exactly in 256 px tiles)" in result.stderr
    assert "overlap" not in result.stderr
    output = iio.imread(tmp_path / "phone_denoised.png")
    assert output.shape == noisy.shape and output.dtype == np.uint8
    assert np.abs(output.astype(int) - reference.astype(int)).max() <= 2  # rounded here, truncated by the authors
    (record,) = json.loads((tmp_path / "r.json").read_text())["files"]
    assert record["status"] == "done"


def test_the_dask_engine_runs_idf_one_plane_per_block(tmp_path):
    zarr = pytest.importorskip("zarr")
    from napari_clipdenoise.distributed import denoise_zarr

    stack = (np.random.default_rng(3).random((2, 40, 56, 3)) * 255).astype(np.uint8)
    zarr.create_array(tmp_path / "in.zarr", shape=stack.shape, chunks=(1, 16, 16, 3), dtype="uint8")[:] = stack
    report = denoise_zarr(tmp_path / "in.zarr", tmp_path / "out.zarr", "idf", scheduler="sync", axes="ZYXC")
    assert report["blocks_total"] == 2  # whole planes: IDF's statistics are the whole image's
    result = zarr.open_array(tmp_path / "out.zarr", mode="r")[:]
    np.testing.assert_array_equal(result, denoise(stack, "idf", axes="ZYXC"))
    with pytest.raises(ValueError, match="needs whole planes"):
        denoise_zarr(tmp_path / "in.zarr", tmp_path / "out2.zarr", "idf", scheduler="sync", axes="ZYXC", halo=16)


def test_the_evaluation_scores_idf_on_the_papers_protocol(tmp_path):
    import skimage.data

    from napari_clipdenoise.training.evaluate import evaluate, resolve_methods

    folder = tmp_path / "set"
    folder.mkdir()
    iio.imwrite(folder / "chelsea.png", skimage.data.chelsea()[100:164, 150:214])
    document = evaluate([folder], resolve_methods(["noisy", "idf"]), noise=[("gauss", [25.0])], progress=False)
    rows = {row["method"]: row for row in document["results"]}
    assert document["methods"]["idf"]["kind"] == "model"
    assert rows["idf"]["mean_psnr"] > rows["noisy"]["mean_psnr"] + 3  # a real denoiser, on a real photograph
