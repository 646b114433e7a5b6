"""Export (issue 15): BioImage Model Zoo package, ONNX, TorchScript, and importing a package back.

Random weights of the real architecture. The package in this file uses a 16 px
halo so that bioimageio.core's test runs on 48..80 px inputs; the shipped default
(128 px, inputs from 272 px) goes through the same code and is run end to end by
``benchmarks/bioimageio_package.py``.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from napari_clipdenoise.cli import main
from napari_clipdenoise.model.checkpoints import state_dict_sha256
from napari_clipdenoise.model.registry import CT_SCALE, PHOTO_SCALE, load_model

pytest.importorskip("bioimageio.spec", reason="the 'export' extra is not installed")
pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed")
yaml = pytest.importorskip("yaml")

HALO = 16


@pytest.fixture(scope="module")
def package(tmp_path_factory, rgb_checkpoint):
    from napari_clipdenoise.model.export import export_model

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("export") / "random_rgb.zip"
    exported = export_model(rgb_checkpoint, "bioimageio", path, halo=HALO)
    return exported


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def test_the_package_describes_what_the_issue_asks_for(package):
    rdf = _rdf(package.path)
    with zipfile.ZipFile(package.path) as archive:
        names = set(archive.namelist())
        readme = archive.read("README.md").decode()
        test_input = np.load(archive.open("test_input.npy"))
        test_output = np.load(archive.open("test_output.npy"))
    assert {"rdf.yaml", "README.md", "cover.png", "test_input.npy", "test_output.npy", "network.py"} <= names
    assert {"state_dict.pt", "torchscript.pt", "model.onnx"} <= names
    assert rdf["format_version"].startswith("0.5") and rdf["type"] == "model"
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "CLIPDenoiser"
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    space_in = [a for a in inp["axes"] if a["type"] == "space"]
    assert [a["size"] for a in space_in] == [{"min": 2 * HALO + 16, "step": 16}] * 2, "multiples of 16"
    space_out = [a for a in out["axes"] if a["type"] == "space"]
    assert all(a["halo"] == HALO and a["size"]["tensor_id"] == "input" for a in space_out)
    # the intensity convention of an RGB model without a recorded scale: 0..255 <-> [0, 1]
    assert inp["preprocessing"][1] == {"id": "scale_linear", "kwargs": {"gain": 1 / 255, "offset": 0.0}}
    assert [step for step in out["postprocessing"] if step["id"] != "ensure_dtype"] == [
        {"id": "scale_linear", "kwargs": {"gain": 255.0, "offset": 0.0}},
        {"id": "clip", "kwargs": {"min": 0.0, "max": 255.0}},
    ]
    assert test_input.shape == test_output.shape == (1, 3, 64, 64) and test_input.dtype == np.float32
    assert 0 <= test_input.min() and test_input.max() <= 255 and test_input.max() > 100, "input in 0..255 units"
    assert rdf["cite"][0]["url"] == "https://arxiv.org/abs/2403.15132" and "Cheng" in rdf["cite"][0]["text"]
    assert rdf["license"] == "BSD-3-Clause" and "RANDOM weights" in readme, "random weights say so"
    assert "## Validation" in readme and "onnxruntime" in readme and "halo of 16 px (SMALLER" in readme


def test_bioimageio_core_model_test_passes(package):
    from bioimageio.core import test_model

    summary = test_model(str(package.path), weight_format="pytorch_state_dict")
    assert summary.status == "passed", summary.format()
    names = " ".join(detail.name for detail in summary.details)
    assert "parametrized" in names or "size parameter n" in names, "inference at several sizes was tested"


def test_the_package_imports_back_with_the_same_weights(package, rgb_checkpoint, capsys):
    original = load_model(rgb_checkpoint)
    assert main(["models", "import", str(package.path), "--name", "from-zoo"]) == 0, capsys.readouterr().err
    again = load_model("from-zoo")
    assert state_dict_sha256(again.network.state_dict()) == original.metadata["weights_sha256"]
    assert again.metadata["installed_from"] == str(package.path) and again.metadata["random_weights"] is True
    assert again.metadata["bioimageio_name"].startswith("CLIP denoiser")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again.network(x), original.network(x))


def test_a_package_of_another_network_is_refused(tmp_path, package):
    from napari_clipdenoise.errors import CheckpointError
    from napari_clipdenoise.model.loading import load_checkpoint

    rdf = _rdf(package.path)
    rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "UNet2d"
    rdf["config"].pop("napari_clipdenoise")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("rdf.yaml", yaml.safe_dump(rdf))
    with pytest.raises(CheckpointError, match="another network.*UNet2d"):
        load_checkpoint(other)


@pytest.mark.parametrize("in_channels", [3, 1])
def test_onnx_has_dynamic_height_and_width_and_matches_torch(tmp_path, rgb_checkpoint, gray_checkpoint, in_channels):
    import onnxruntime as ort

    from napari_clipdenoise.model.export import ONNX_TOLERANCE

    checkpoint = rgb_checkpoint if in_channels == 3 else gray_checkpoint
    output = tmp_path / "model.onnx"
    assert main(["models", "export", str(checkpoint), "--format", "onnx", "-o", str(output)]) == 0
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert isinstance(shape[2], str) and isinstance(shape[3], str), f"height and width are dynamic: {shape}"
    network = load_model(checkpoint).network
    for size in ((1, 64, 64), (2, 32, 96)):
        x = torch.rand(size[0], in_channels, *size[1:], generator=torch.Generator().manual_seed(5))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            want = network(x).numpy()
        assert np.abs(got - want).max() <= ONNX_TOLERANCE


def test_torchscript_export_runs_at_other_sizes(tmp_path, rgb_checkpoint):
    output = tmp_path / "model.pt"
    assert main(["models", "export", str(rgb_checkpoint), "--format", "torchscript", "-o", str(output)]) == 0
    scripted = torch.jit.load(str(output))
    network = load_model(rgb_checkpoint).network
    x = torch.rand(1, 3, 48, 80)
    with torch.no_grad():
        assert torch.allclose(scripted(x), network(x), atol=1e-5)


def test_export_never_replaces_what_it_did_not_make(tmp_path, rgb_checkpoint, capsys):
    existing = tmp_path / "keep.pt"
    existing.write_bytes(b"someone's file")
    assert main(["models", "export", str(rgb_checkpoint), "--format", "torchscript", "-o", str(existing)]) == 2
    assert "exists" in capsys.readouterr().err and existing.read_bytes() == b"someone's file"
    assert main(["models", "export", str(rgb_checkpoint), "--format", "onnx", "-o", str(rgb_checkpoint)]) == 2
    assert "own file" in capsys.readouterr().err
    missing = tmp_path / "no" / "such" / "folder" / "m.onnx"
    assert main(["models", "export", str(rgb_checkpoint), "--format", "onnx", "-o", str(missing)]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file is left"


def test_a_missing_extra_is_one_clear_error(tmp_path, rgb_checkpoint, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    output = tmp_path / "m.onnx"
    assert main(["models", "export", str(rgb_checkpoint), "--format", "onnx", "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "'export' extra" in err and "torch==2.13.0" in err and not output.exists()


def test_processing_follows_each_intensity_convention():
    from napari_clipdenoise.model.bioimageio import processing

    pre, post = processing(CT_SCALE)
    assert pre[1]["kwargs"] == {"gain": 1 / 4096, "offset": 0.25}, "(HU + 1024) / 4096"
    assert post == [{"id": "scale_linear", "kwargs": {"gain": 4096.0, "offset": -1024.0}}], "HU are not clipped"
    raw = np.array([-1024.0, 0.0, 3072.0])
    normalised = raw * pre[1]["kwargs"]["gain"] + pre[1]["kwargs"]["offset"]
    assert np.allclose(normalised, [0, 0.25, 1])
    assert np.allclose(normalised * post[0]["kwargs"]["gain"] + post[0]["kwargs"]["offset"], raw)
    _, photo_post = processing(PHOTO_SCALE)
    assert photo_post[-1] == {"id": "clip", "kwargs": {"min": 0.0, "max": 255.0}}


def test_the_licence_of_the_authors_weights_is_stated_as_unknown(tmp_path):
    from napari_clipdenoise.model.bioimageio import _licence, model_input_scale
    from napari_clipdenoise.model.registry import DenoisingModel

    authors = DenoisingModel(None, "ldct", {"format": "reference", "name": "ldct"})
    spdx, text = _licence(authors, None)
    assert spdx is None and text.startswith("unknown") and "released weights" in text
    assert model_input_scale(authors) == (CT_SCALE, True)
    assert _licence(authors, "CC-BY-4.0")[0] == "CC-BY-4.0"
