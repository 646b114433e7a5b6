"""IDF peer network: reproduces the authors' outputs, strict weight files, safe .ckpt reading, exact tiles."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_clipdenoise.errors import CheckpointError, DenoiseCancelled
from napari_clipdenoise.model import idf

DEMO = Path(__file__).parent / "data" / "idf_demo"
DEMO_NAMES = sorted(p.stem for p in (DEMO / "noisy").glob("*.png"))


@pytest.fixture(scope="module")
def network():
    return idf.load_bundled_idf()


@pytest.fixture(scope="module")
def state():
    from safetensors.torch import load_file

    return load_file(str(idf.BUNDLED_WEIGHTS))


def _read(path: Path) -> np.ndarray:
    return np.asarray(iio.imread(path))[..., :3]


def _plane(name: str) -> np.ndarray:
    return (_read(DEMO / "noisy" / f"{name}.png").astype(np.float32) / 255.0).transpose(2, 0, 1)


# --------------------------------------------------------------------------- the authors' outputs
def test_demo_images_are_present():
    assert len(DEMO_NAMES) == 8
    assert (DEMO / "LICENSE").is_file() and (DEMO / "NOTICE.md").is_file()


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_reproduces_the_authors_outputs(network, name):
    reference = _read(DEMO / "denoised_by_authors" / f"{name}.png").astype(np.int16)
    x = torch.from_numpy(_plane(name))[None]
    with torch.inference_mode():
        y = network(x)
    # The authors saved (clamp(y, 0, 1) * 255) truncated to uint8, not rounded.
    ours = (y.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8).astype(np.int16)
    diff = np.abs(ours - reference)
    within = float(np.mean(diff <= 1))
    print(f"{name}: {within:.5f} within 1 grey level ({np.mean(diff == 0):.4f} equal), max difference {diff.max()}")
    assert within >= 0.99


# --------------------------------------------------------------------------- the module
def test_parameter_count_and_keys(network):
    assert idf.count_parameters(network) == idf.N_PARAMETERS == 49_021
    assert set(network.state_dict()) == set(idf.STATE_SHAPES)
    assert {k: tuple(v.shape) for k, v in network.state_dict().items()} == idf.STATE_SHAPES
    assert network.iterations == 10
    assert (idf.IDFDenoiser.family, idf.IDFDenoiser.in_channels, idf.IDFDenoiser.out_channels) == ("idf", 3, 3)
    assert idf.IDFDenoiser.size_multiple == 1 and idf.IDFDenoiser.accepts_tile_geometry is False


def test_tiny_images_and_batches(network):
    with pytest.raises(ValueError, match="at least 3 x 3"):
        network(torch.rand(1, 3, 2, 9))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        network(torch.rand(1, 1, 9, 9))
    torch.manual_seed(0)
    batch = torch.rand(2, 3, 7, 5)
    with torch.inference_mode():
        y = network(batch)
        single = network(batch[1:])
    assert y.shape == batch.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    torch.testing.assert_close(y[1:], single)  # each image has its own statistics


def test_sum_of_squares_is_accurate_on_large_tensors():
    torch.manual_seed(0)
    t = torch.relu(torch.randn(1, 64, 256, 256)).contiguous(memory_format=torch.channels_last)
    exact = float((t.double() ** 2).sum())
    for view in (t, t.contiguous(), t[..., 1:-1, 1:-1], t.contiguous()[..., 1:-1, 1:-1]):
        expected = float((view.double() ** 2).sum())
        assert abs(float(idf._sum_squares(view)) - expected) <= 1e-7 * expected
    assert abs(float(idf._rms(t)) - (exact / t.numel()) ** 0.5) <= 1e-6


def test_bf16_is_close_to_fp32(network, crop):
    part = np.ascontiguousarray(crop[:, :64, :80])
    fp32 = idf.denoise_plane(network, part)
    bf16 = idf.denoise_plane(network, part, precision="bf16")
    psnr = 10 * np.log10(1 / np.mean((fp32.astype(np.float64) - bf16) ** 2))
    assert psnr > 45, psnr
    with pytest.raises(ValueError, match="precision"):
        idf.denoise_plane(network, part, precision="fp16")


# --------------------------------------------------------------------------- strict weight files
def _write(tmp_path, state, name="weights.safetensors"):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_loads_a_valid_file(tmp_path, state, network):
    loaded = idf.load_idf_weights(_write(tmp_path, state))
    for key, value in network.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("block.gca.conv.weight"), "missing key(s): block.gca.conv.weight"),
        (lambda s: s.__setitem__("block.extra.weight", torch.zeros(2)), "unexpected key(s): block.extra.weight"),
        (
            lambda s: s.__setitem__("block.kernel_predictor.weight", torch.zeros(9, 72, 3, 3)),
            "block.kernel_predictor.weight has shape (9, 72, 3, 3), expected (9, 73, 3, 3)",
        ),
        (
            lambda s: s["block.feature_extractor.2.weight"].view(-1).__setitem__(5, float("nan")),
            "block.feature_extractor.2.weight holds non-finite values",
        ),
    ],
    ids=["missing", "unexpected", "shape", "nan"],
)
def test_strict_loading_names_the_problem(tmp_path, state, change, message):
    broken = {k: v.clone() for k, v in state.items()}
    change(broken)
    with pytest.raises(CheckpointError) as info:
        idf.load_idf_weights(_write(tmp_path, broken))
    assert message in str(info.value)


def test_rejects_files_that_are_not_safetensors(tmp_path, state):
    pth = tmp_path / "weights.pth"
    torch.save(state, pth)
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights at all")
    for path in (pth, text, tmp_path / "absent.safetensors"):
        with pytest.raises(CheckpointError, match="safetensors|not found"):
            idf.load_idf_weights(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(_write(tmp_path, state).read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="could not read"):
        idf.load_idf_weights(truncated)


# --------------------------------------------------------------------------- the authors' .ckpt
@dataclass
class AuthorsConfig:
    """Stands in for the configuration objects the authors' Lightning checkpoints pickle."""

    iterations: int = 10
    dilations: list = field(default_factory=lambda: [2, 1])


class Malicious:
    """Unpickling this with a plain pickle would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class MaliciousOpen:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _lightning_checkpoint(tmp_path, state, *, drop=None):
    marker = tmp_path / "pwned"
    marker_open = tmp_path / "pwned_open"
    state_dict = {"model." + k: v.clone() for k, v in state.items() if k != drop}
    state_dict["loss.weight"] = torch.ones(3)  # something that is not the block
    checkpoint = {
        "epoch": 41,
        "state_dict": state_dict,
        "hyper_parameters": {"config": AuthorsConfig(), "hook": Malicious(marker)},
        "callbacks": {"ModelCheckpoint": MaliciousOpen(marker_open)},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(4)}}, "param_groups": [{"lr": 1e-3}]}],
        "pytorch-lightning_version": "2.1.0",
    }
    path = tmp_path / "idf_g_15.ckpt"
    torch.save(checkpoint, path)
    return path, (marker, marker_open)


def test_reads_a_lightning_checkpoint_without_running_its_code(tmp_path, state):
    path, markers = _lightning_checkpoint(tmp_path, state)
    # The file really is dangerous: a plain unpickler would create the marker (not run here).
    assert b"system" in path.read_bytes()
    block = idf.read_idf_lightning_checkpoint(path)
    assert not any(marker.exists() for marker in markers)
    assert set(block) == set(idf.STATE_SHAPES)
    for key, value in block.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    # ... and the weights build the same network.
    network = idf.network_from_state(block, str(path))
    assert idf.count_parameters(network) == 49_021


def test_lightning_checkpoint_errors(tmp_path, state):
    path, _ = _lightning_checkpoint(tmp_path, state, drop="block.gca.attention.2.weight")
    with pytest.raises(CheckpointError, match=r"model\.block\.gca\.attention\.2\.weight"):
        idf.read_idf_lightning_checkpoint(path)
    no_state = tmp_path / "other.ckpt"
    torch.save({"weights": state}, no_state)
    with pytest.raises(CheckpointError, match="state_dict"):
        idf.read_idf_lightning_checkpoint(no_state)
    old_pickle = tmp_path / "legacy.ckpt"
    old_pickle.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(CheckpointError, match="not a PyTorch"):
        idf.read_idf_lightning_checkpoint(old_pickle)


# --------------------------------------------------------------------------- exact tiled runner
@pytest.fixture(scope="module")
def crop():
    # A real noisy photograph, 200 x 300, cropped off-centre from a 321 x 481 demo input.
    return np.ascontiguousarray(_plane("Gaussian")[:, 37:237, 101:401])


@pytest.fixture(scope="module")
def whole(network, crop):
    steps = []
    result = idf.denoise_plane(network, crop, on_tiles=steps.append)
    assert sum(steps) == idf.count_tile_steps(*crop.shape[1:], None) == network.iterations
    return result


def test_whole_plane_equals_the_module(network, crop, whole):
    with torch.inference_mode():
        expected = network(torch.from_numpy(crop)[None])[0].numpy()
    assert whole.dtype == np.float32 and whole.shape == crop.shape
    np.testing.assert_array_equal(whole, expected)


@pytest.mark.parametrize("cache_logits", [False, True], ids=["recompute", "cached"])
def test_exact_tiles_equal_the_whole_plane(network, crop, whole, cache_logits):
    steps = []
    tiled = idf.denoise_plane(network, crop, tile_size=64, on_tiles=steps.append, cache_logits=cache_logits)
    # 200 x 300 in 64 px tiles: 4 x 5 tiles of 50 x 60 pixels, two passes per iteration.
    assert sum(steps) == idf.count_tile_steps(200, 300, 64) == 2 * 10 * 4 * 5
    difference = np.abs(tiled - whole).max()
    print(f"tiled vs whole ({'cached' if cache_logits else 'recompute'}): max abs difference {difference:.2e}")
    assert difference < 1e-4


def test_exact_tiles_on_odd_small_planes(network):
    rng = np.random.default_rng(3)
    for height, width, tile in ((37, 53, 16), (5, 4, 2), (3, 3, 1)):
        plane = rng.random((3, height, width), dtype=np.float32)
        whole = idf.denoise_plane(network, plane)
        tiled = idf.denoise_plane(network, plane, tile_size=tile)
        assert np.abs(tiled - whole).max() < 1e-4, (height, width, tile)
    with pytest.raises(ValueError, match="at least 3 x 3"):
        idf.denoise_plane(network, rng.random((3, 2, 40), dtype=np.float32), tile_size=8)
    with pytest.raises(ValueError, match="tile_size"):
        idf.denoise_plane(network, rng.random((3, 20, 40), dtype=np.float32), tile_size=0)


def test_count_tile_steps():
    assert idf.count_tile_steps(200, 300, None) == 10
    assert idf.count_tile_steps(200, 300, 300) == 10  # one tile: a whole-image run
    assert idf.count_tile_steps(200, 300, 64) == 400
    assert idf.count_tile_steps(200, 300, 64, iterations=3) == 120


def test_cancel_between_tiles(network, crop):
    steps = []
    with pytest.raises(DenoiseCancelled):
        idf.denoise_plane(
            network, crop[:, :64, :96], tile_size=32, on_tiles=steps.append, cancel=lambda: sum(steps) >= 7
        )
    assert sum(steps) == 7  # stopped at the next tile
    with pytest.raises(DenoiseCancelled):
        idf.denoise_plane(network, crop[:, :16, :16], cancel=lambda: True)
