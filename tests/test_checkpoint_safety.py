"""Checkpoints are parsed by structure, defensively (issue 12, class 3).

Every hostile file here is made by the test: a valid project file that starts
like a pickle, crafted configs, absurd declared shapes and channel counts, a
compressed pickle that expands 1000:1, NaN/Inf weights and models whose channels
do not fit the registry entry. Each gives a CheckpointError naming the problem,
before any large allocation (the declared sizes here would need terabytes), and
never torch's advice to retry with weights_only=False.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from napari_clipdenoise.errors import CheckpointError
from napari_clipdenoise.model.checkpoints import (
    PROJECT_FORMAT,
    save_checkpoint,
    sniff_format,
)
from napari_clipdenoise.model.loading import load_checkpoint
from napari_clipdenoise.model.network import CLIPDenoiser, NetworkConfig, init_random_weights
from napari_clipdenoise.model.registry import install_model, installed_models
from napari_clipdenoise.model.testing import random_network, reference_state_dict

REPO = Path(__file__).resolve().parents[1]


#: Tiny torch work on 2 shared cores: one thread is several times faster.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _project_header(config: dict) -> dict:
    return {"format": PROJECT_FORMAT, "metadata": json.dumps({"config": config})}


# ------------------------------------------------------------- format by structure, not by first byte
def test_a_valid_project_file_that_starts_like_a_pickle_loads(tmp_path):
    network = random_network(3, seed=3)
    path = tmp_path / "starts_with_0x80.safetensors"
    save_checkpoint(network, path, {"pad": ""})
    base = struct.unpack("<Q", path.read_bytes()[:8])[0]
    target = base + 8 + (0x80 - (base + 8)) % 256  # the next header length whose low byte is 0x80
    save_checkpoint(network, path, {"pad": "x" * (target - base)})
    head = path.read_bytes()[:1]
    assert head == b"\x80", "the header length's low byte is pickle's PROTO opcode"
    assert sniff_format(path) == "safetensors"
    loaded = load_checkpoint(path)
    assert loaded.format == "project"
    expected = network.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in loaded.network.state_dict().items())
    install_model(path, "mine")
    assert installed_models() == ["mine"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pad=st.integers(0, 700), shapes=st.lists(st.lists(st.integers(0, 5), max_size=3), min_size=1, max_size=4))
def test_safetensors_files_are_recognised_whatever_their_first_byte(tmp_path, pad, shapes):
    path = tmp_path / "any.safetensors"
    tensors = {f"t{i}": torch.zeros(shape) for i, shape in enumerate(shapes)}
    save_file(tensors, str(path), metadata={"pad": "p" * pad})
    assert sniff_format(path) == "safetensors"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04", b"PK\x05\x06", struct.pack("<Q", 24)]),
    body=st.binary(max_size=300),
)
def test_arbitrary_bytes_give_a_checkpoint_error_only(tmp_path, prefix, body):
    path = tmp_path / "blob.pth"
    path.write_bytes(prefix + body)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value)


# ------------------------------------------------------------- crafted configs and declared sizes
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    config=st.one_of(
        st.dictionaries(
            st.sampled_from(["in_channels", "out_channels", "bias", "negative_slope", "feature_aug_level"]),
            st.one_of(
                st.integers(-(2**40), 2**40),
                st.floats(allow_nan=True, allow_infinity=True),
                st.booleans(),
                st.text(max_size=5),
                st.none(),
            ),
        ),
        st.lists(st.integers(), max_size=3),
        st.text(max_size=8),
    )
)
def test_crafted_configs_are_refused_before_anything_is_built(tmp_path, config):
    path = tmp_path / "crafted.safetensors"
    save_file({"last.weight": torch.zeros(3, 64, 3, 3)}, str(path), metadata=_project_header(config))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "network config" in message or "does not fit the CLIPDenoiser network" in message, message


def test_an_absurd_channel_count_in_a_config_is_named(tmp_path):
    path = tmp_path / "huge.safetensors"
    save_file({"last.weight": torch.zeros(1)}, str(path), metadata=_project_header({"out_channels": 10**9}))
    with pytest.raises(CheckpointError, match=r"out_channels must be 1 or 3, got 1000000000"):
        load_checkpoint(path)


def _with_header(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}, "declares shape"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 2**60]}, "does not hold"),
        ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "invalid shape"),
        ({"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}, "unknown dtype"),
        ({"dtype": "F32", "shape": [4]}, "dtype, shape and data_offsets"),
    ],
)
def test_absurd_declared_tensor_sizes_are_refused_before_reading(tmp_path, entry, message):
    path = tmp_path / "declared.safetensors"
    _with_header(path, {"__metadata__": _project_header({}), "last.weight": entry}, bytes(16))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_header_longer_than_the_file_is_refused(tmp_path):
    path = tmp_path / "long_header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**50) + b'{"a": 1}')
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(path)


class _HugeView:
    """Pickles as a tensor that claims 10^12 elements on a 16-element storage."""

    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        size = (10**6, 10**6)
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, size, (10**6, 1), False, collections.OrderedDict()))


def test_absurd_shapes_and_channel_counts_in_torch_files(tmp_path):
    state = reference_state_dict(random_network(3))
    state["last.weight"] = _HugeView(torch.zeros(16).untyped_storage())
    path = tmp_path / "net_g_huge_view.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointError, match="could not read"):
        load_checkpoint(path)

    state = reference_state_dict(random_network(3))
    state["last.weight"] = torch.zeros(1).expand(10**5, 64, 3, 3)  # saved as one float: 10^5 output channels
    path = tmp_path / "net_g_many_channels.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointError, match=r"out_channels must be 1 or 3, got 100000"):
        load_checkpoint(path)


def test_a_compressed_pickle_that_expands_1000_to_1_is_refused(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"params": {"x" * 4_000_000: torch.zeros(2)}}, plain)
    bomb = tmp_path / "net_g_bomb.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for member in source.infolist():
            out.writestr(member.filename, source.read(member.filename))
    with zipfile.ZipFile(bomb) as archive:
        pickle_member = next(m for m in archive.infolist() if m.filename.endswith("data.pkl"))
    assert pickle_member.file_size / pickle_member.compress_size > 500
    with pytest.raises(CheckpointError, match=r"data.pkl is compressed \d+:1"):
        load_checkpoint(bomb)


# ------------------------------------------------------------- NaN / Inf and the registry entry
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("layout", ["project", "reference"])
def test_nan_and_inf_weights_are_refused(tmp_path, value, layout):
    network = random_network(3, seed=7)
    with torch.no_grad():
        network.up_path[2].conv_block.block[0].weight[0, 0, 0, 0] = value
    path = tmp_path / ("bad.safetensors" if layout == "project" else "net_g_bad.pth")
    if layout == "project":
        save_checkpoint(network, path)
    else:
        torch.save({"params": reference_state_dict(network)}, path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights in 1 tensor\(s\): up_path.2.conv_block"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        install_model(path, "gaussian15")
    assert installed_models() == []


def test_a_model_whose_channels_do_not_fit_the_registry_entry_is_refused(tmp_path):
    three_to_one = init_random_weights(CLIPDenoiser(NetworkConfig(in_channels=3, out_channels=1))).eval()
    path = tmp_path / "three_to_one.safetensors"
    save_checkpoint(three_to_one, path)
    with pytest.raises(CheckpointError, match=r"3 input and 1 output channels but 'gaussian15' is a 3-channel"):
        install_model(path, "gaussian15")
    gray = tmp_path / "gray.pth"
    torch.save({"params": reference_state_dict(random_network(1))}, gray)
    with pytest.raises(CheckpointError, match=r"1-channel model but 'srgb' is a 3-channel"):
        install_model(gray, "srgb")
    assert installed_models() == []
    install_model(path, "my-three-to-one")  # under a name of its own it is fine
    assert installed_models() == ["my-three-to-one"]


@pytest.mark.parametrize("hostile", ["bomb", "nan", "exploit"])
def test_the_command_line_shows_the_problem_never_a_traceback(tmp_path, hostile, isolated_model_cache):
    path = tmp_path / f"{hostile}.pth"
    if hostile == "bomb":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr("archive/data.pkl", b"\x80\x02" + b"N" * 3_000_000 + b".")
            out.writestr("archive/version", "3\n")
    elif hostile == "nan":
        network = random_network(3)
        with torch.no_grad():
            network.last.weight.fill_(float("nan"))
        path = path.with_suffix(".safetensors")
        save_checkpoint(network, path)
    else:
        torch.save({"params": {"last.weight": os.system}}, path)
    env = {**os.environ, "CLIPDENOISE_CACHE_DIR": str(isolated_model_cache), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "napari_clipdenoise.cli", "models", "import", str(path), "--name", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("clipdenoise: error:"), result.stderr
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
    expected = {"bomb": "compressed", "nan": "NaN or infinite", "exploit": "Python object"}[hostile]
    assert expected in result.stderr
    assert not list(isolated_model_cache.glob("*.safetensors"))
