"""The shipped training recipes equal METHOD.md's numbers; config overrides, schedule and augmentations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tomllib

from napari_clipdenoise.training import config as cfg
from napari_clipdenoise.training.augment import apply_mixup, geometric_augment, mixup_params
from napari_clipdenoise.training.schedule import CyclicCosineLR, lr_at, scaled_periods

RECIPES = Path(cfg.__file__).parent / "recipes"


def read(name: str) -> dict:
    with open(RECIPES / f"{name}.toml", "rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("name", ["gaussian15", "srgb", "ldct"])
def test_common_recipe_numbers_match_method(name):
    recipe = read(name)
    # METHOD.md section 3, "Common"
    assert recipe["data"]["crop_size"] == 128
    assert recipe["data"]["batch_size"] == 16
    assert recipe["data"]["geometric_augs"] is True
    assert recipe["train"]["mixup_prob"] == 0.5
    assert recipe["train"]["mixup_beta"] == 1.2
    assert recipe["train"]["loss"] == "l1"
    assert recipe["train"]["lr"] == 3e-4
    assert recipe["train"]["weight_decay"] == 1e-4
    assert recipe["train"]["betas"] == [0.9, 0.999]
    assert recipe["train"]["grad_clip_norm"] == 0.01
    assert recipe["train"]["precision"] == "fp32"
    assert recipe["seed"] == 100
    assert recipe["model"]["encoder_bn"] == "reference"
    assert recipe["output"]["checkpoint_every"] == 100_000


def test_gaussian15_recipe():
    recipe = read("gaussian15")
    assert (recipe["model"]["in_channels"], recipe["model"]["out_channels"]) == (3, 3)
    assert recipe["model"]["aug_level"] == 0.025
    assert recipe["noise"] == {"kind": "gaussian", "sigma": 15.0, "clip": False}
    assert recipe["data"]["kind"] == "clean"
    assert recipe["train"]["iterations"] == 300_000
    # 3e-4 constant for 92k, then cosine to 1e-6 over 208k
    assert recipe["schedule"] == {"periods": [92_000, 208_000], "eta_mins": [3e-4, 1e-6], "restart_weights": [1.0, 1.0]}


def test_srgb_recipe():
    recipe = read("srgb")
    assert (recipe["model"]["in_channels"], recipe["model"]["out_channels"]) == (3, 3)
    assert recipe["model"]["aug_level"] == 0.05
    assert recipe["data"]["kind"] == "pairs"
    assert recipe["noise"]["kind"] == "none"
    assert recipe["train"]["iterations"] == 300_000
    assert recipe["schedule"] == {"periods": [92_000, 208_000], "eta_mins": [3e-4, 1e-6], "restart_weights": [1.0, 1.0]}


def test_ldct_recipe():
    recipe = read("ldct")
    assert (recipe["model"]["in_channels"], recipe["model"]["out_channels"]) == (1, 1)
    assert recipe["model"]["aug_level"] == 0.025
    assert recipe["noise"] == {"kind": "gaussian", "sigma": 5.0, "clip": False}
    assert recipe["data"]["kind"] == "ct"
    assert recipe["data"]["exclude"] == ["L506"]
    assert recipe["data"]["ct_units"] == "normalized"
    assert recipe["train"]["iterations"] == 40_000
    assert recipe["schedule"] == {"periods": [40_000], "eta_mins": [1e-6], "restart_weights": [1.0]}


def test_schedule_values():
    g15 = dict(base_lr=3e-4, periods=[92_000, 208_000], eta_mins=[3e-4, 1e-6])
    assert lr_at(1, **g15) == pytest.approx(3e-4, abs=1e-15)
    assert lr_at(92_000, **g15) == pytest.approx(3e-4, abs=1e-15)
    assert lr_at(92_001, **g15) < 3e-4
    assert lr_at(92_000 + 104_000, **g15) == pytest.approx((3e-4 + 1e-6) / 2, rel=1e-12)
    assert lr_at(300_000, **g15) == pytest.approx(1e-6, rel=1e-12)
    assert lr_at(400_000, **g15) == 1e-6
    ct = dict(base_lr=3e-4, periods=[40_000], eta_mins=[1e-6])
    assert lr_at(20_000, **ct) == pytest.approx((3e-4 + 1e-6) / 2, rel=1e-12)
    assert lr_at(10_000, **ct) == pytest.approx(1e-6 + (3e-4 - 1e-6) * (1 + math.cos(math.pi / 4)) / 2, rel=1e-12)
    assert lr_at(40_000, **ct) == pytest.approx(1e-6, rel=1e-12)
    assert scaled_periods([92_000, 208_000], 300) == [92, 208]
    assert sum(scaled_periods([92_000, 208_000], 77)) == 77


def test_scheduler_follows_lr_at():
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=3e-4)
    scheduler = CyclicCosineLR(optimizer, [4, 8], [3e-4, 1e-6])
    seen = []
    for _ in range(14):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [lr_at(t, 3e-4, [4, 8], [3e-4, 1e-6]) for t in range(1, 15)]
    assert seen == pytest.approx(expected, rel=1e-12)
    state = scheduler.state_dict()
    assert state["last_epoch"] == 14


def test_overrides_and_validation():
    config = cfg.load_config(
        "gaussian15",
        [
            cfg.parse_override("train.iterations=20"),
            cfg.parse_override("noise.sigma=[5, 50]"),
            cfg.parse_override("data.train=/some/where"),
        ],
    )
    assert config["train"]["iterations"] == 20
    assert config["noise"]["sigma"] == [5, 50]
    assert config["data"]["train"] == "/some/where"
    with pytest.raises(cfg.ConfigError, match="unknown config field 'train.iteration'"):
        cfg.load_config("gaussian15", [("train.iteration", 3)])
    with pytest.raises(cfg.ConfigError, match="multiple of 16"):
        cfg.load_config("gaussian15", [("data.crop_size", 100)])
    with pytest.raises(cfg.ConfigError, match="encoder_bn must be one of"):
        cfg.load_config("gaussian15", [("model.encoder_bn", "eval")])
    with pytest.raises(cfg.ConfigError, match="neither a shipped recipe"):
        cfg.load_config("no_such_recipe")
    with pytest.raises(cfg.ConfigError, match="expects table.field=VALUE"):
        cfg.parse_override("train.iterations")


def test_toml_round_trip(tmp_path):
    config = cfg.load_config("ldct", [("data.train", 'C:\\data "ct"'), ("noise.sigma", [1.5, 9.0])])
    path = tmp_path / "resolved.toml"
    path.write_text(cfg.to_toml(config))
    assert cfg.load_config(path) == config


def test_train_command_line_shortcuts():
    from napari_clipdenoise.training.train import build_parser, resolve_from_args

    args = build_parser().parse_args(
        [
            "gaussian15",
            "--iterations",
            "20",
            "--data",
            "imgs",
            "--lr",
            "1e-3",
            "--random-encoder",
            "--set",
            "train.mixup_prob=0",
            "--encoder-bn",
            "frozen",
        ]
    )
    config, resume = resolve_from_args(args)
    assert resume is None
    assert config["train"]["iterations"] == 20 and config["train"]["lr"] == 1e-3
    assert config["data"]["train"] == "imgs" and config["model"]["random_encoder"] is True
    assert config["train"]["mixup_prob"] == 0 and config["model"]["encoder_bn"] == "frozen"


def test_eight_geometric_modes():
    image = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    outs = [geometric_augment(image, m) for m in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8  # all different
    np.testing.assert_array_equal(outs[1], image[::-1])
    np.testing.assert_array_equal(outs[2], np.rot90(image))
    np.testing.assert_array_equal(outs[7], np.flipud(np.rot90(image, 3)))
    for out in outs:
        np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(image, axis=None))
    with pytest.raises(ValueError, match="0..7"):
        geometric_augment(image, 8)


def test_mixup_rate_and_mixing():
    rng = np.random.default_rng(0)
    draws = [mixup_params(rng, 4, 0.5, 1.2) for _ in range(2000)]
    rate = sum(d is not None for d in draws) / len(draws)
    assert 0.45 < rate < 0.55
    lams = np.array([d[0] for d in draws if d is not None])
    assert 0.45 < lams.mean() < 0.55 and lams.min() > 0 and lams.max() < 1  # Beta(1.2, 1.2) is symmetric
    target = np.arange(4.0)[:, None]
    inputs = target + 10
    lam, perm = 0.25, np.array([3, 2, 1, 0])
    mixed_t, mixed_i = apply_mixup(target, inputs, lam, perm)
    np.testing.assert_allclose(mixed_t[:, 0], 0.25 * np.arange(4) + 0.75 * np.arange(4)[::-1])
    np.testing.assert_allclose(mixed_i - mixed_t, 10)
    assert mixup_params(rng, 4, 0.0, 1.2) is None
