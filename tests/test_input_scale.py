"""Each model's intensity convention: recorded by the registry, models import and training; used by "auto".

``-m ldct`` on data declared in HU is fed on the model's own window [-1024, 3072];
clear mismatches between data and model become warnings on the plan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from napari_clipdenoise import install_model, load_model, plan_denoise
from napari_clipdenoise.inference.normalize import estimate_range
from napari_clipdenoise.inference.options import InferenceOptions, OptionError
from napari_clipdenoise.model.registry import CT_SCALE, PHOTO_SCALE, REGISTRY, InputScale

CLI = [sys.executable, "-m", "napari_clipdenoise.cli"]


def test_registry_entries_and_options():
    assert REGISTRY["ldct"].input_scale == CT_SCALE and CT_SCALE.low == -1024.0 and CT_SCALE.high == 3072.0
    assert REGISTRY["gaussian15"].input_scale == PHOTO_SCALE == REGISTRY["srgb"].input_scale
    assert InputScale.from_record(CT_SCALE.as_record()) == CT_SCALE
    assert InputScale.from_record({"unit": "HU", "low": 5, "high": 1}) is None
    assert InferenceOptions(units="hu").units == "HU" and InferenceOptions(units="none").units is None
    with pytest.raises(OptionError, match="units must be None"):
        InferenceOptions(units="kelvin")


def test_install_and_load_carry_the_scale(gray_checkpoint, rgb_checkpoint):
    install_model(gray_checkpoint, "ldct")
    assert load_model("ldct").input_scale == CT_SCALE  # from the registry entry, written into the file
    assert load_model("ldct").provenance()["input_scale"]["unit"] == "HU"
    install_model(gray_checkpoint, "my_ct", input_scale="HU")
    assert load_model("my_ct").metadata["input_scale"]["unit"] == "HU"
    install_model(rgb_checkpoint, "unlabelled")
    assert load_model("unlabelled").input_scale is None  # unknown: no record, no registry entry
    with pytest.raises(ValueError, match="input_scale must be one of"):
        install_model(gray_checkpoint, "bad", input_scale="Kelvin")


def test_models_import_and_info_show_the_scale(tmp_path, gray_checkpoint):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([*CLI, "models", "import", str(gray_checkpoint), "--name", "mine", "--input-scale", "HU"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = subprocess.run([*CLI, "models", "info", "mine"], capture_output=True, text=True, env=env, timeout=60)
    assert "input scale: HU [-1024, 3072] -> [0, 1]" in info.stdout
    registry = subprocess.run([*CLI, "models", "info", "ldct"], capture_output=True, text=True, env=env, timeout=60)
    assert "input scale: HU [-1024, 3072]" in registry.stdout and "not installed" in registry.stdout


def test_ct_training_records_the_hu_scale(tmp_path, one_torch_thread):
    from napari_clipdenoise.training.data import training_input_scale
    from napari_clipdenoise.training.train import main

    data = tmp_path / "slices"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        np.save(data / f"L0{i}_target.npy", rng.random((40, 40)).astype(np.float32) * 0.4)
    out = tmp_path / "run"
    argv = ["ldct", "--data", str(data), "--out", str(out), "--iterations", "2", "--batch-size", "2",
            "--crop-size", "32", "--random-encoder", "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    model = load_model(out / "ldct.safetensors")
    assert model.input_scale == CT_SCALE
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint16))
    assert training_input_scale("clean", [tmp_path / "a.tif"]).unit == "16-bit"


def test_auto_uses_the_model_scale_only_for_data_declared_in_its_unit():
    hu = [np.array([-1000.0, -50.0, 40.0, 900.0])]
    assert estimate_range(hu, np.float32, units="HU", model_scale=CT_SCALE) == (chosen := estimate_range(
        hu, np.float32, mode="auto", units="HU", model_scale=CT_SCALE))  # fmt: skip
    assert (chosen.low, chosen.high, chosen.rule) == (-1024.0, 3072.0, "model input scale (HU)")
    undeclared = estimate_range(hu, np.float32, model_scale=CT_SCALE)
    assert undeclared.rule.startswith("percentiles") and undeclared.low > -1000.0
    photo_model = estimate_range(hu, np.float32, units="HU", model_scale=PHOTO_SCALE)
    assert photo_model.rule.startswith("percentiles")
    explicit = estimate_range(hu, np.float32, mode="percentile", units="HU", model_scale=CT_SCALE)
    assert explicit.rule.startswith("percentiles")


class Facts:
    """A model as plan_denoise sees it: channels, name and input scale (the facts the widget reads from a file)."""

    def __init__(self, channels, scale, name):
        self.in_channels, self.input_scale, self.name = channels, scale, name


@pytest.mark.parametrize(
    ("image", "model", "units", "expected"),
    [
        (np.full((32, 32, 3), 120, np.uint8), Facts(1, CT_SCALE, "ldct"), None, "RGB image"),
        (np.arange(1024, dtype=np.uint16).reshape(32, 32), Facts(1, CT_SCALE, "ldct"), None, "no negative values"),
        (np.arange(1024, dtype=np.uint16).reshape(32, 32), Facts(1, CT_SCALE, "ldct"), "HU", "no negative values"),
        (np.linspace(-1024, 2000, 1024, dtype=np.float32).reshape(32, 32), Facts(1, CT_SCALE, "ldct"), None,
         "look like HU"),
        (np.linspace(-1024, 2000, 1024, dtype=np.float32).reshape(32, 32), Facts(3, PHOTO_SCALE, "gaussian15"),
         "HU", "8-bit sRGB photographs"),
    ],
)  # fmt: skip
def test_mismatches_are_warned(image, model, units, expected):
    plan = plan_denoise(image, model, units=units)
    assert len(plan.warnings) == 1 and expected in plan.warnings[0], plan.warnings
    assert plan.warnings[0].startswith("warning: ") and plan.warnings[0] in plan.notes


@pytest.mark.parametrize(
    ("image", "model", "units"),
    [
        (np.linspace(-1024, 2000, 1024, dtype=np.float32).reshape(32, 32), Facts(1, CT_SCALE, "ldct"), "HU"),
        (np.full((32, 32, 3), 120, np.uint8), Facts(3, PHOTO_SCALE, "gaussian15"), None),
        (np.linspace(-1024, 2000, 1024, dtype=np.float32).reshape(32, 32), Facts(1, None, "unknown"), "HU"),
    ],
)
def test_fitting_data_get_no_warning(image, model, units):
    assert plan_denoise(image, model, units=units).warnings == []


def test_denoise_logs_the_warnings(gray_checkpoint, caplog):
    import logging

    from napari_clipdenoise import denoise

    install_model(gray_checkpoint, "ldct")
    with caplog.at_level(logging.WARNING, logger="napari_clipdenoise.inference.pipeline"):
        denoise(np.arange(256, dtype=np.uint16).reshape(16, 16), load_model("ldct"), tile_size=None,
                precision="fp32", device="cpu")  # fmt: skip
    assert any("no negative values" in record.message for record in caplog.records)


_FACTS = """
import json, sys
from napari_clipdenoise.model.facts import model_facts
facts = model_facts(sys.argv[1])
print(json.dumps({"channels": facts.in_channels, "unit": facts.input_scale.unit, "torch": "torch" in sys.modules}))
"""


def test_model_facts_read_the_file_header_without_torch(gray_checkpoint):
    install_model(gray_checkpoint, "ldct")
    done = subprocess.run([sys.executable, "-c", _FACTS, "ldct"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ), check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"channels": 1, "unit": "HU", "torch": False}
