"""Checkpoint formats: project round trip, reference strictness, safety, CLIP weight files."""

import os
import pickle

import pytest
import torch

from napari_clipdenoise._version import __version__
from napari_clipdenoise.errors import CheckpointError
from napari_clipdenoise.model.checkpoints import (
    load_clip_encoder_weights,
    read_project_metadata,
    save_checkpoint,
    state_dict_sha256,
)
from napari_clipdenoise.model.loading import load_checkpoint
from napari_clipdenoise.model.network import CLIPDenoiser
from napari_clipdenoise.model.testing import (
    random_network,
    reference_state_dict,
    write_clip_safetensors,
    write_clip_torchscript,
    write_reference_checkpoint,
)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("in_channels", [3, 1])
def test_project_format_round_trip(tmp_path, in_channels):
    network = random_network(in_channels, seed=4)
    path = tmp_path / "model.safetensors"
    meta = save_checkpoint(network, path, {"name": "mine", "noise": "gaussian 15", "recipe": {"iterations": 10}})
    loaded = load_checkpoint(path)
    assert loaded.format == "project"
    assert _same_weights(network, loaded.network)
    on_disk = read_project_metadata(path)
    assert on_disk == meta
    assert on_disk["config"]["in_channels"] == in_channels
    assert on_disk["in_channels"] == on_disk["out_channels"] == in_channels
    assert on_disk["noise"] == "gaussian 15" and on_disk["recipe"] == {"iterations": 10}
    assert on_disk["project_version"] == __version__
    assert on_disk["weights_sha256"] == state_dict_sha256(network.state_dict())
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_corrupted_project_file_is_detected(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(random_network(3), path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # flip a byte inside the tensor payload
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_reference_checkpoint_with_bias_keys_is_accepted(tmp_path):
    path = tmp_path / "net_g_bias.pth"
    network = write_reference_checkpoint(path, 3, seed=1, bias=True)
    loaded = load_checkpoint(path)
    assert loaded.format == "reference" and loaded.network.config.bias
    assert _same_weights(network, loaded.network)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("up_path.2.conv_block.block.0.weight"), "1 missing key"),
        (lambda s: s.__setitem__("decoder.extra.weight", torch.zeros(3)), "1 unexpected key"),
        (lambda s: s.__setitem__("last.weight", torch.zeros(3, 32, 3, 3)), "mis-shaped key.*last.weight"),
        (lambda s: s.pop("encoder.layer3.5.bn3.running_var"), "encoder.layer3.5.bn3.running_var"),
    ],
)
def test_reference_checkpoint_that_does_not_fit_names_the_keys(tmp_path, edit, message):
    state = reference_state_dict(random_network(3))
    edit(state)
    path = tmp_path / "net_g_bad.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited-marker",))


def test_pickles_are_never_unpickled_beyond_tensors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = tmp_path / "evil.pth"
    with open(plain, "wb") as handle:
        pickle.dump({"params": _Exploit()}, handle)
    with pytest.raises(CheckpointError, match="plain Python pickle") as info:
        load_checkpoint(plain)
    assert "weights_only=False" not in str(info.value)
    archive = tmp_path / "evil_zip.pth"
    torch.save({"params": _Exploit()}, archive)  # torch's own zip format, holding a code-running object
    with pytest.raises(CheckpointError, match=r"Python object \(posix.system|Python object \(os.system") as info:
        load_checkpoint(archive)
    assert "weights_only" not in str(info.value) and info.value.__cause__ is None
    assert not (tmp_path / "exploited-marker").exists()


@pytest.mark.parametrize("content", [b"", b"hello, I am not a checkpoint\n", b"PK\x03\x04broken zip"])
def test_non_checkpoints_get_a_clear_error(tmp_path, content):
    path = tmp_path / "file.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")


def test_dict_without_params(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"optimizer": {"lr": 1}}, path)
    with pytest.raises(CheckpointError, match="params"):
        load_checkpoint(path)


def test_clip_safetensors_weights(tmp_path):
    path = tmp_path / "open_clip_model.safetensors"
    state = write_clip_safetensors(path, seed=3)
    encoder_state = load_clip_encoder_weights(path)
    encoder = CLIPDenoiser().encoder
    encoder.load_state_dict(encoder_state, strict=True)
    assert encoder_state["conv1.weight"].dtype == torch.float32
    assert torch.equal(encoder_state["layer3.5.conv3.weight"], state["visual.layer3.5.conv3.weight"].float())
    assert not any(k.startswith(("layer4", "attnpool")) for k in encoder_state)
    with pytest.raises(CheckpointError, match="not a napari-clipdenoise checkpoint"):
        load_checkpoint(path)


def test_clip_bin_weights(tmp_path):
    from napari_clipdenoise.model.testing import clip_visual_state_dict

    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip_visual_state_dict(seed=2), path)
    encoder_state = load_clip_encoder_weights(path)
    CLIPDenoiser().encoder.load_state_dict(encoder_state, strict=True)


def test_torchscript_only_when_trusted(tmp_path):
    path = tmp_path / "RN50.pt"
    state = write_clip_torchscript(path, seed=5)
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_clip_encoder_weights(path)
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_checkpoint(path)
    encoder_state = load_clip_encoder_weights(path, trust_torchscript=True)
    assert torch.equal(encoder_state["bn2.running_mean"], state["visual.bn2.running_mean"].float())
    CLIPDenoiser().encoder.load_state_dict(encoder_state, strict=True)


def test_clip_file_with_wrong_shapes(tmp_path):
    from safetensors.torch import save_file

    from napari_clipdenoise.model.testing import clip_visual_state_dict

    state = clip_visual_state_dict()
    state["visual.conv1.weight"] = torch.zeros(16, 3, 3, 3, dtype=torch.float16)
    path = tmp_path / "bad_clip.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="mis-shaped.*conv1.weight"):
        load_clip_encoder_weights(path)
