"""``clipdenoise adapt``: inputs as ``denoise`` reads them, the installed result in ``denoise -m``, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from test_adapt import fluorescence_stack
from test_cli import run

from napari_clipdenoise.cli import main
from napari_clipdenoise.formats import read_provenance
from napari_clipdenoise.model.checkpoints import read_project_metadata

FAST = ["--crop-size", "32", "--batch-size", "2", "--validate-every", "2", "--threads", "1", "-q"]


@pytest.fixture
def stack_file(tmp_path):
    path = tmp_path / "scope" / "stack.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, fluorescence_stack(), photometric="minisblack", metadata={"axes": "ZYX"})
    return path


@pytest.mark.slow
def test_adapt_installs_a_model_that_denoise_uses_with_its_provenance(
    stack_file, gray_checkpoint, tmp_path, capsys, one_torch_thread
):
    code = main(
        ["adapt", str(stack_file.parent), "-m", str(gray_checkpoint), "--name", "my_scope", "--steps", "4", *FAST]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "installed 'my_scope'" in printed and "held-out masked loss" in printed
    out = tmp_path / "out"
    # the real command in its own process finds the installed model by name
    result = run(["denoise", stack_file, "-m", "my_scope", "-o", out, "--tile-size", "none", "--device", "cpu", "-q"])
    assert result.returncode == 0, result.stderr
    denoised = out / "stack_denoised.tif"
    assert tifffile.imread(denoised).shape == (3, 64, 64)
    provenance = read_provenance(denoised)
    assert provenance["model"]["name"] == "my_scope"
    assert provenance["model"]["adapted_from"]["name"] == "random_gray"
    assert main(["models", "info", "my_scope"]) == 0
    info = capsys.readouterr().out
    assert '"fingerprint"' in info and '"loss_curve"' in info


def test_resume_continues_a_saved_run(stack_file, gray_checkpoint, isolated_model_cache, capsys, one_torch_thread):
    args = ["adapt", str(stack_file), "-m", str(gray_checkpoint), "--name", "scope2", *FAST]
    assert main([*args, "--steps", "3"]) == 0
    state = isolated_model_cache / "adapt-states" / "scope2.pt"
    assert state.is_file()
    assert main([*args, "--steps", "5", "--resume", "--overwrite"]) == 0
    record = read_project_metadata(isolated_model_cache / "scope2.safetensors")["adaptation"]
    assert record["steps"] == 5 and record["resumed"] == 1
    assert record["loss_curve"]["step"] == [1, 2, 3, 4, 5]


def test_usage_errors_name_the_flag_or_the_problem(stack_file, gray_checkpoint, tmp_path, capsys):
    base = ["adapt", str(stack_file), "-m", str(gray_checkpoint)]
    assert main(base + ["--steps", "1"]) == 2
    assert "give --name NAME" in capsys.readouterr().err
    assert main(base + ["--name", "x", "--crop-size", "40"]) == 2
    assert "--crop-size must be a multiple of 16" in capsys.readouterr().err
    assert main(base + ["--name", "x", "--structured-mask", "X", "--structured-length", "4"]) == 2
    assert "--structured-length must be an odd number" in capsys.readouterr().err
    assert main(["adapt", str(tmp_path / "missing.tif"), "--name", "x", "-m", str(gray_checkpoint)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(base + ["--name", "x", "--resume"]) == 2
    assert "no saved run" in capsys.readouterr().err
    assert main(base + ["--name", "bad/name"]) == 2
    assert "not valid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--name", "x", "--steps", "3", "--minutes", "1"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_too_small_input_is_a_clear_error(tmp_path, gray_checkpoint, capsys):
    small = tmp_path / "small.npy"
    np.save(small, np.arange(400, dtype=np.uint16).reshape(20, 20))
    assert main(["adapt", str(small), "-m", str(gray_checkpoint), "--name", "x", "--steps", "1", *FAST]) == 2
    assert "too small for 32 x 32 px crops" in capsys.readouterr().err


def test_a_model_that_is_not_a_clip_denoiser_is_a_clear_error(stack_file, tmp_path, capsys):
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    code = main(["adapt", str(stack_file), "-m", str(junk), "--name", "x", "--steps", "1", *FAST])
    assert code == 2
    assert "cannot adapt this model" in capsys.readouterr().err


def test_an_output_file_without_a_name(stack_file, gray_checkpoint, tmp_path, capsys, one_torch_thread):
    output = tmp_path / "adapted.safetensors"
    code = main(["adapt", str(stack_file), "-m", str(gray_checkpoint), "-o", str(output), "--steps", "2", *FAST])
    assert code == 0
    assert f"wrote {output}" in capsys.readouterr().out
    assert output.is_file() and output.with_name("adapted.adapt-state.pt").is_file()
    assert read_project_metadata(output)["adaptation"]["steps"] == 2
