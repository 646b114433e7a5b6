"""``napari_clipdenoise.adapt``: training on a real stack, budgets, cancel and resume, the result, bad inputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import napari_clipdenoise as nc
from napari_clipdenoise.adaptation.loop import AdaptError, read_state
from napari_clipdenoise.errors import AdaptCancelled, CheckpointError
from napari_clipdenoise.inference.options import OptionError

FAST = {"crop_size": 32, "batch_size": 2, "validate_every": 4, "max_minutes": None}


def fluorescence_stack(planes=3, size=64, seed=0) -> np.ndarray:
    """Blobs on a dark background with Poisson-Gaussian noise, as uint16 (a microscope-like stack)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    clean = np.zeros((planes, size, size))
    for z in range(planes):
        for _ in range(12):
            cy, cx, radius = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 5)
            clean[z] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    photons = rng.poisson(np.clip(clean, 0, 1) * 60 + 5)
    return np.clip(photons * 20 + 100 + rng.normal(0, 40, clean.shape), 0, 65535).astype(np.uint16)


def test_the_masked_loss_decreases_on_a_real_stack(gray_checkpoint, one_torch_thread):
    stack = fluorescence_stack()
    reports = []
    model = nc.adapt(stack, gray_checkpoint, steps=24, lr=1e-3, progress=reports.append, **FAST)
    record = model.metadata["adaptation"]
    curve = record["loss_curve"]
    assert curve["val_step"][0] == 0 and curve["val_step"][-1] == 24
    assert min(curve["val_loss"][1:]) < 0.7 * curve["val_loss"][0]  # random weights: plenty to learn
    assert record["best_val_loss"] == min(curve["val_loss"])
    assert record["steps"] == 24 and record["stopped"] == "steps"
    assert [r.phase for r in reports][0] == "preparing" and reports[-1].phase == "finished"
    assert reports[-1].step == 24 and reports[-1].fraction == 1.0
    assert record["data"]["images"][0]["axes"] == "ZYX"
    assert record["data"]["images"][0]["shape"] == [3, 64, 64]
    assert len(record["data"]["fingerprint"]) == 64
    assert record["trained_parameters"] == ["last", "up_path.3", "up_path.4"]
    assert model.metadata["adapted_from"]["name"] == "random_gray"
    assert not model.network.training


def test_only_the_chosen_decoder_stages_change(gray_checkpoint, gray_model, one_torch_thread):
    model = nc.adapt(fluorescence_stack(1), gray_checkpoint, steps=2, decoder_stages=1, validation_fraction=0, **FAST)
    before = gray_model.network.state_dict()
    after = model.network.state_dict()
    changed = {k.split(".conv_block")[0].split(".weight")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"up_path.4", "last"}  # the encoder (and its BN statistics) and the rest stay as they were
    assert torch.equal(gray_model.network.last.weight, before["last.weight"])  # the base model is not modified


def test_multichannel_and_rgb_data_use_the_channel_groups_of_denoise(rgb_checkpoint, one_torch_thread):
    rng = np.random.default_rng(0)
    two_channels = rng.integers(0, 4000, (2, 2, 48, 48)).astype(np.uint16)  # C Z Y X for the RGB model
    model = nc.adapt(two_channels, rgb_checkpoint, axes="CZYX", steps=1, validation_fraction=0, **FAST)
    data = model.metadata["adaptation"]["data"]
    assert data["arrays"] == 4  # 2 channels x 2 planes, each fed to the RGB model as grayscale
    assert len(data["images"][0]["intensity_ranges"]) == 2
    colour = rng.integers(0, 255, (48, 48, 3)).astype(np.uint8)
    model = nc.adapt(colour, rgb_checkpoint, steps=1, validation_fraction=0, **FAST)
    assert model.metadata["adaptation"]["data"]["images"][0]["intensity_ranges"] == [
        {"channels": [0, 1, 2], "low": 0.0, "high": 255.0, "rule": "uint8 range"}
    ]


def test_the_time_budget_ends_the_run(gray_checkpoint, one_torch_thread):
    model = nc.adapt(fluorescence_stack(1), gray_checkpoint, **{**FAST, "max_minutes": 0.001})
    assert model.metadata["adaptation"]["stopped"] == "time"


def test_early_stopping_keeps_the_best_weights(gray_checkpoint, one_torch_thread):
    # a learning rate far too high makes the held-out loss worse than the base's: the base weights come back
    model = nc.adapt(fluorescence_stack(), gray_checkpoint, steps=40, lr=0.5, patience=2, **FAST)
    record = model.metadata["adaptation"]
    assert record["stopped"] == "early_stopping" and record["steps"] < 40
    best = record["loss_curve"]["val_step"][int(np.argmin(record["loss_curve"]["val_loss"]))]
    assert record["best_step"] == best


def _cancel_after(steps: int):
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > steps

    return cancel


def test_cancel_then_resume_gives_the_same_weights_as_one_run(gray_checkpoint, tmp_path, one_torch_thread):
    stack = fluorescence_stack()
    straight = nc.adapt(stack, gray_checkpoint, steps=10, state=tmp_path / "a.pt", **FAST)
    state = tmp_path / "b.pt"
    with pytest.raises(AdaptCancelled) as info:
        nc.adapt(stack, gray_checkpoint, steps=10, state=state, name="halfway", cancel=_cancel_after(6), **FAST)
    assert info.value.state_path == state
    assert read_state(state)["run"]["step"] == 6
    assert "halfway" not in nc.installed_models()  # nothing is installed by a cancelled run
    resumed = nc.adapt(stack, gray_checkpoint, steps=10, state=state, resume=True, name="halfway", **FAST)
    for key, value in straight.network.state_dict().items():
        assert torch.equal(value, resumed.network.state_dict()[key]), key
    a, b = straight.metadata["adaptation"], resumed.metadata["adaptation"]
    assert a["loss_curve"] == b["loss_curve"] and b["resumed"] == 1
    assert "halfway" in nc.installed_models()


def test_an_event_cancels_before_the_first_step(gray_checkpoint, tmp_path):
    event = threading.Event()
    event.set()
    with pytest.raises(AdaptCancelled, match="step 0"):
        nc.adapt(fluorescence_stack(1), gray_checkpoint, steps=5, cancel=event, **FAST)


def test_resume_refuses_other_data_settings_or_model(gray_checkpoint, rgb_checkpoint, tmp_path, one_torch_thread):
    stack = fluorescence_stack()
    state = tmp_path / "s.pt"
    nc.adapt(stack, gray_checkpoint, steps=2, state=state, **FAST)
    with pytest.raises(AdaptError, match="images differ"):
        nc.adapt(stack[:, ::-1].copy(), gray_checkpoint, steps=4, state=state, resume=True, **FAST)
    with pytest.raises(AdaptError, match="different settings.*decoder_stages"):
        nc.adapt(stack, gray_checkpoint, steps=4, state=state, resume=True, decoder_stages=3, **FAST)
    with pytest.raises(AdaptError, match="another base model"):
        nc.adapt(stack, rgb_checkpoint, steps=4, state=state, resume=True, **FAST)
    with pytest.raises(AdaptError, match="already did 2 steps"):
        nc.adapt(stack, gray_checkpoint, steps=2, state=state, resume=True, **FAST)
    with pytest.raises(AdaptError, match="no adaptation state"):
        nc.adapt(stack, gray_checkpoint, steps=2, state=tmp_path / "none.pt", resume=True, **FAST)


def test_the_result_is_installed_with_provenance_and_denoises(gray_checkpoint, one_torch_thread):
    from napari_clipdenoise.model.checkpoints import file_sha256, read_project_metadata, state_dict_sha256

    stack = fluorescence_stack()
    model = nc.adapt(stack, gray_checkpoint, steps=4, name="my_scope", **FAST)
    assert "my_scope" in nc.installed_models()
    loaded = nc.load_model("my_scope")
    assert loaded.name == "my_scope"
    metadata = read_project_metadata(loaded.path)
    base = nc.load_model(gray_checkpoint)
    assert metadata["adapted_from"]["weights_sha256"] == state_dict_sha256(base.network.state_dict())
    assert metadata["adapted_from"]["file_sha256"] == file_sha256(gray_checkpoint)
    assert metadata["adaptation"]["data"]["fingerprint"] == model.metadata["adaptation"]["data"]["fingerprint"]
    assert metadata["adaptation"]["settings"]["steps"] == 4
    assert metadata["adaptation"]["loss_curve"]["step"] == [1, 2, 3, 4]
    assert loaded.provenance()["adapted_from"]["name"] == "random_gray"
    for key, value in model.network.state_dict().items():
        assert torch.equal(value, loaded.network.state_dict()[key])
    out = nc.denoise(stack, "my_scope", tile_size=None)
    assert out.shape == stack.shape and out.dtype == stack.dtype
    np.testing.assert_array_equal(out, nc.denoise(stack, model, tile_size=None))


def test_installing_checks_the_name_before_any_work(gray_checkpoint, tmp_path):
    stack = fluorescence_stack(1)
    with pytest.raises(ValueError, match="not valid"):
        nc.adapt(stack, gray_checkpoint, steps=1, name="../evil", **FAST)
    with pytest.raises(AdaptError, match="registry's name"):
        nc.adapt(stack, gray_checkpoint, steps=1, name="gaussian15", **FAST)
    nc.install_model(gray_checkpoint, "taken")
    with pytest.raises(FileExistsError, match="already installed"):
        nc.adapt(stack, gray_checkpoint, steps=1, name="taken", **FAST)
    with pytest.raises(AdaptError, match="safetensors"):
        nc.adapt(stack, gray_checkpoint, steps=1, output=tmp_path / "x.pth", **FAST)


@pytest.mark.parametrize(
    ("image", "axes", "message"),
    [
        (np.zeros((20, 20), np.uint16), None, "too small for 32 x 32 px crops; adaptation needs planes of at least"),
        (np.zeros((6, 1, 1), np.uint16), None, "planes of 1 x 1 px"),
        (np.arange(2400, dtype=np.uint16).reshape(40, 60), None, "only 1 crop.*validation_fraction=0"),
        (np.full((64, 64), np.nan, np.float32), None, "NaN"),
        (np.ones((2, 64, 64), np.uint16), None, "only constant planes"),
        (np.zeros((0, 64), np.uint16), None, "empty"),
        (np.zeros((64, 64), bool), None, "dtype bool"),
    ],
)
def test_bad_images_get_clear_errors(gray_checkpoint, image, axes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        nc.adapt(image, gray_checkpoint, steps=1, axes=axes, **FAST)


def test_a_crop_size_hint_for_small_images(gray_checkpoint):
    with pytest.raises(ValueError, match=r"use crop_size=48"):
        nc.adapt(np.zeros((50, 50), np.uint16), gray_checkpoint, steps=1, crop_size=64, max_minutes=None)


def test_a_nan_in_a_later_plane_is_found(gray_checkpoint):
    stack = fluorescence_stack(20).astype(np.float32)
    stack[19, 3, 3] = np.nan  # beyond the sampled planes of the intensity estimate
    with pytest.raises(ValueError, match="NaN"):
        nc.adapt(stack, gray_checkpoint, steps=1, **FAST)


def test_bad_settings_are_option_errors(gray_checkpoint):
    with pytest.raises(OptionError, match="crop_size"):
        nc.adapt(fluorescence_stack(1), gray_checkpoint, steps=1, crop_size=50)
    with pytest.raises(TypeError, match="unknown adaptation setting"):
        nc.adapt(fluorescence_stack(1), gray_checkpoint, step=1)


def test_models_that_are_not_clip_denoisers_are_refused(tmp_path, monkeypatch):
    from napari_clipdenoise.model import registry
    from napari_clipdenoise.model.testing import write_clip_safetensors

    stack = fluorescence_stack(1)
    clip_file = tmp_path / "clip_rn50.safetensors"
    write_clip_safetensors(clip_file)
    with pytest.raises(CheckpointError, match="cannot adapt this model.*not a napari-clipdenoise checkpoint"):
        nc.adapt(stack, clip_file, steps=1, **FAST)
    junk = tmp_path / "notes.pth"
    junk.write_text("not weights")
    with pytest.raises(CheckpointError, match="cannot adapt this model"):
        nc.adapt(stack, junk, steps=1, **FAST)
    other = registry.DenoisingModel(torch.nn.Conv2d(1, 1, 3), "idf-like", {"family": "idf"})
    with pytest.raises(AdaptError, match="idf network, not a CLIPDenoiser"):
        nc.adapt(stack, other, steps=1, **FAST)
    entry = registry.RegistryEntry("idfmodel", "a model of another family", "n/a", 1, "test", "n/a", family="idf")
    monkeypatch.setitem(registry.REGISTRY, "idfmodel", entry)
    with pytest.raises(AdaptError, match="'idf' family"):
        nc.adapt(stack, "idfmodel", steps=1, **FAST)


def test_mixed_rgb_and_grayscale_inputs_are_refused(rgb_checkpoint):
    gray = np.zeros((64, 64), np.uint8) + np.arange(64, dtype=np.uint8)
    colour = np.stack([gray] * 3, axis=-1)
    with pytest.raises(ValueError, match="mix RGB colour with single-channel"):
        nc.adapt([gray, colour], rgb_checkpoint, steps=1, **FAST)


def test_large_inputs_are_read_as_evenly_spaced_planes(gray_checkpoint, one_torch_thread):
    stack = fluorescence_stack(6)
    model = nc.adapt(stack, gray_checkpoint, steps=1, max_pixels=2 * 64 * 64, validation_fraction=0, **FAST)
    image = model.metadata["adaptation"]["data"]["images"][0]
    assert (image["planes_used"], image["planes_total"]) == (2, 6)
