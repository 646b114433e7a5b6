"""Training on small crops of scikit-image's bundled images with a random encoder (CPU).

The loss goes down, 10 + resume 10 iterations equal 20 straight (bitwise), checkpoints load in
the plugin/CLI loader, and runs without CLIP weights stop with a clear message.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Clean 8-bit images: RGB, grayscale, and one smaller than the crop (mirror-padded)."""
    folder = tmp_path_factory.mktemp("train_images")
    iio.imwrite(folder / "astronaut.png", skimage.data.astronaut()[120:184, 200:264])
    iio.imwrite(folder / "chelsea.png", skimage.data.chelsea()[60:108, 150:206])
    iio.imwrite(folder / "camera.png", skimage.data.camera()[100:150, 200:260])
    iio.imwrite(folder / "coins_small.png", skimage.data.coins()[50:74, 60:90])  # 24 x 30 < crop 32
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(folder: Path, out: Path, iterations: int, *extra: str) -> list[str]:
    return [
        "gaussian15",
        "--data",
        str(folder),
        "--out",
        str(out),
        "--iterations",
        str(iterations),
        "--batch-size",
        "2",
        "--crop-size",
        "32",
        "--random-encoder",
        "--log-every",
        "1",
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]


def _read_log(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_resume_continues_exactly(image_folder, tmp_path):
    from safetensors.torch import load_file

    from napari_clipdenoise import load_model
    from napari_clipdenoise.training.train import main

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(_args(image_folder, straight, 20)) == 0
    assert main(_args(image_folder, split, 20, "--stop-after", "10")) == 0
    assert not (split / "gaussian15.safetensors").exists()  # interrupted: state only
    assert main(["--resume", str(split), "--no-progress"]) == 0

    a = load_file(straight / "gaussian15.safetensors")
    b = load_file(split / "gaussian15.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # decoder weights and the encoder's BN statistics (reference mode updates them)
        assert (a[key].float() - b[key].float()).abs().max().item() <= 1e-7, key
    assert any("running_mean" in k for k in a)

    log_a, log_b = _read_log(straight / "train_log.csv"), _read_log(split / "train_log.csv")
    assert [r["iteration"] for r in log_b] == [str(i) for i in range(1, 21)]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    assert [r["lr"] for r in log_a] == [r["lr"] for r in log_b]
    assert set(log_a[0]) == {"iteration", "loss", "lr", "val_psnr", "throughput", "elapsed_s"}

    model = load_model(straight / "gaussian15.safetensors")
    meta = model.metadata
    assert meta["name"] == "gaussian15" and meta["random_encoder"] is True and meta["iterations"] == 20
    assert meta["recipe"]["train"]["iterations"] == 20 and meta["recipe"]["data"]["crop_size"] == 32
    assert meta["noise"].startswith("gaussian sigma 15.0/255")
    assert meta["input_scale"]["unit"] == "8-bit" and model.input_scale.high == 255.0  # 8-bit PNGs on [0, 1]
    assert model.in_channels == 3 and not model.network.training

    # the state file holds every RNG stream and loads with weights_only=True
    import torch

    state = torch.load(split / "state_latest.pt", weights_only=True)
    assert state["iteration"] == 20
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert {"bit_generator", "order", "position"} <= set(state["sampler"])

    # a finished run cannot be resumed without more iterations
    assert main(["--resume", str(split), "--no-progress"]) == 2


def test_loss_goes_down_on_a_fixed_batch(tmp_path):
    """Overfit one 32 x 32 image (no crops/flips/mixup to vary it) with a higher learning rate."""
    from napari_clipdenoise.training.train import main

    folder = tmp_path / "one"
    folder.mkdir()
    iio.imwrite(folder / "patch.png", skimage.data.astronaut()[200:232, 220:252])
    out = tmp_path / "run"
    code = main(
        _args(
            folder,
            out,
            25,
            "--lr",
            "1e-3",
            "--set",
            "data.geometric_augs=false",
            "--set",
            "train.mixup_prob=0",
            "--set",
            "schedule.eta_mins=[1e-3, 1e-6]",
        )
    )
    assert code == 0
    losses = [float(r["loss"]) for r in _read_log(out / "train_log.csv")]
    assert len(losses) == 25
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_encoder_sources(tmp_path, image_folder):
    import torch

    from napari_clipdenoise.model.testing import (
        clip_visual_state_dict,
        write_clip_safetensors,
        write_clip_torchscript,
        write_reference_checkpoint,
    )
    from napari_clipdenoise.training.config import load_config
    from napari_clipdenoise.training.train import TrainingError, build_network

    base = [("data.train", str(image_folder))]
    with pytest.raises(TrainingError, match="--random-encoder"):
        build_network(load_config("gaussian15", base))

    clip_file = tmp_path / "open_clip_rn50.safetensors"
    expected = write_clip_safetensors(clip_file, seed=3)
    network, source = build_network(load_config("gaussian15", base + [("model.clip_weights", str(clip_file))]))
    assert source["random_encoder"] is False and source["clip_weights"]["file"] == clip_file.name
    assert torch.equal(network.encoder.conv1.weight, expected["visual.conv1.weight"].float())
    assert network.feature_aug_level == 0.025 and network.encoder_bn_mode == "reference"

    script = tmp_path / "RN50.pt"
    write_clip_torchscript(script, seed=4)
    network, _ = build_network(load_config("gaussian15", base + [("model.clip_weights", str(script))]))
    assert torch.equal(
        network.encoder.layer3[5].bn3.running_var, clip_visual_state_dict(4)["visual.layer3.5.bn3.running_var"].float()
    )

    reference = tmp_path / "net_g_latest.pth"
    original = write_reference_checkpoint(reference, 1, seed=5)
    network, source = build_network(load_config("ldct", base + [("model.init_checkpoint", str(reference))]))
    assert source["init_checkpoint"]["format"] == "reference" and network.in_channels == 1
    assert torch.equal(network.first.weight, original.first.weight)
    with pytest.raises(TrainingError, match="1->1 channel model"):
        build_network(load_config("gaussian15", base + [("model.init_checkpoint", str(reference))]))
    with pytest.raises(TrainingError, match="choose one encoder source"):
        build_network(
            load_config("gaussian15", base + [("model.clip_weights", str(clip_file)), ("model.random_encoder", True)])
        )


def test_cli_without_clip_weights_stops_with_a_clear_message(image_folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_clipdenoise.training.train",
            "gaussian15",
            "--data",
            str(image_folder),
            "--out",
            str(tmp_path / "run"),
            "--iterations",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "no CLIP RN50 weights" in result.stderr and "--clip-weights" in result.stderr
    assert "--random-encoder" in result.stderr
    assert not (tmp_path / "run" / "gaussian15.safetensors").exists()


def test_missing_data_is_reported(tmp_path):
    from napari_clipdenoise.training.train import main

    assert main(["gaussian15", "--random-encoder", "--out", str(tmp_path / "r")]) == 2  # no --data
    assert (
        main(["gaussian15", "--random-encoder", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    )


def test_patch_sampler_kinds(tmp_path, image_folder):
    from napari_clipdenoise.training.config import load_config
    from napari_clipdenoise.training.data import PatchSampler, pad_to

    ct = tmp_path / "ct"
    ct.mkdir()
    slice_ = np.linspace(0.1, 0.6, 40 * 40, dtype=np.float32).reshape(40, 40)
    np.save(ct / "L067_001_target.npy", slice_)
    np.save(ct / "L067_001_input.npy", slice_ + 1)
    np.save(ct / "L506_001_target.npy", slice_ + 2)  # held-out patient
    config = load_config("ldct", [("data.train", str(ct)), ("data.crop_size", 32), ("data.batch_size", 64)])
    sampler = PatchSampler(config, seed=0)
    assert [p.name for p in sampler.files] == ["L067_001_target.npy"]
    clean, noisy = sampler.next_batch()
    assert clean.shape == noisy.shape == (64, 1, 32, 32) and clean.dtype == noisy.dtype == np.float32
    assert clean.min() >= 0.1 - 1e-6 and clean.max() <= 0.6 + 1e-6
    assert (noisy - clean).std() == pytest.approx(5 / 255, rel=0.05)

    config = load_config(
        "gaussian15",
        [
            ("data.train", str(image_folder)),
            ("data.crop_size", 32),
            ("data.batch_size", 8),
            ("noise.kind", "poisson_gaussian"),
            ("noise.peak", 30.0),
            ("noise.sigma", [0.0, 5.0]),
        ],
    )
    sampler = PatchSampler(config, seed=1)
    clean, noisy = sampler.next_batch()
    assert clean.shape == (8, 3, 32, 32) and np.abs(noisy - clean).mean() > 0.02
    # same seed, same batches; the sampler's state restores the stream
    again = PatchSampler(config, seed=1)
    state = again.state_dict()
    np.testing.assert_array_equal(again.next_batch()[0], clean)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.next_batch()[1], noisy)
    # a grayscale file becomes 3 equal channels for an RGB model
    gray = PatchSampler(
        load_config(
            "gaussian15", [("data.train", str(image_folder)), ("data.crop_size", 32), ("data.pattern", "camera*")]
        ),
        seed=0,
    )
    patch = gray.sample()[0]
    np.testing.assert_array_equal(patch[0], patch[2])
    small = pad_to(np.arange(6, dtype=np.float32).reshape(2, 3, 1), 8)
    assert small.shape == (8, 8, 1) and set(np.unique(small)) == set(range(6))
