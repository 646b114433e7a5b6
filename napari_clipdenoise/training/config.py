"""Training configuration: TOML recipes, defaults, command-line overrides, validation.

A configuration is a plain nested ``dict`` (tables ``model``, ``data``, ``noise``,
``train``, ``schedule``, ``output`` plus top-level ``name``, ``description`` and
``seed``). :data:`DEFAULTS` lists every field; a recipe file only needs the fields
it changes, and ``--set table.field=VALUE`` changes any of them (VALUE is read as a
TOML value, so ``--set train.lr=1e-3``, ``--set noise.sigma=[5,50]`` and
``--set data.train=/path`` all work).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import tomllib

RECIPES_DIR = Path(__file__).parent / "recipes"
RECIPE_NAMES = ("gaussian15", "srgb", "ldct")

DEFAULTS: dict = {
    "name": "clipdenoise",
    "description": "",
    "seed": 100,
    "model": {
        "in_channels": 3,
        "out_channels": 3,
        "aug_level": 0.025,
        "encoder_bn": "reference",  # "reference" (BN in train mode, as the authors) or "frozen"
        "clip_weights": "",  # CLIP RN50 file (.pt TorchScript, open_clip .bin/.safetensors) or "open_clip"
        "init_checkpoint": "",  # start from a project .safetensors or reference .pth checkpoint
        "random_encoder": False,  # ablations and tests only
    },
    "data": {
        "kind": "clean",  # clean | pairs | ct
        "train": "",
        "noisy": "",  # pairs: folder of noisy images with the same file names as `train`
        "val": "",
        "val_noisy": "",
        "pattern": "",  # optional glob for file names (ct: "*target*")
        "exclude": [],  # file names containing any of these substrings are skipped (ct: held-out patient)
        "ct_units": "normalized",  # ct .npy values: "normalized" ((HU+1024)/4096) or "hu"
        "crop_size": 128,
        "batch_size": 16,
        "geometric_augs": True,
        "cache_images": 2048,  # decoded training images kept in memory
    },
    "noise": {
        "kind": "gaussian",  # gaussian | poisson_gaussian | none (pairs)
        "sigma": 15.0,  # Gaussian std in 1/255 units: a number, or [low, high] drawn per patch
        "peak": 0.0,  # poisson_gaussian: photons at intensity 1.0 (a number or [low, high])
        "clip": False,  # clip the noisy patch to [0, 1]
    },
    "train": {
        "iterations": 300000,
        "lr": 3e-4,
        "weight_decay": 1e-4,
        "betas": [0.9, 0.999],
        "grad_clip_norm": 0.01,
        "loss": "l1",
        "mixup_prob": 0.5,
        "mixup_beta": 1.2,
        "device": "auto",
        "precision": "fp32",  # fp32 (the reference) or bf16 (autocast)
        "max_minutes": 0.0,  # stop (and write a final checkpoint) after this wall time; 0 = no limit
        "threads": 0,  # CPU threads for torch; 0 = torch's default (1 is fastest on busy shared machines)
    },
    "schedule": {
        "periods": [92000, 208000],
        "eta_mins": [3e-4, 1e-6],
        "restart_weights": [1.0, 1.0],
        "scale_to_iterations": False,  # stretch the periods to train.iterations (short runs)
    },
    "output": {
        "dir": "runs/{name}",
        "checkpoint_every": 100000,
        "log_every": 100,
        "val_every": 4000,
        "val_sigma": 0.0,  # validation Gaussian sigma (1/255); 0: the training sigma (its mean for a range)
        "val_max_size": 256,  # validation images are centre-cropped to at most this size
        "progress": True,
        "tensorboard": True,  # only when the tensorboard package is installed
    },
}

_CHOICES = {
    ("model", "encoder_bn"): ("reference", "frozen"),
    ("data", "kind"): ("clean", "pairs", "ct"),
    ("data", "ct_units"): ("normalized", "hu"),
    ("noise", "kind"): ("gaussian", "poisson_gaussian", "none"),
    ("train", "loss"): ("l1",),
    ("train", "precision"): ("fp32", "bf16"),
}

#: Fields that may change when a run is resumed; anything else must stay as it was.
RESUMABLE_OVERRIDES = {
    "train.iterations",
    "train.device",
    "train.max_minutes",
    "train.threads",
    "output.dir",
    "output.checkpoint_every",
    "output.log_every",
    "output.val_every",
    "output.progress",
    "output.tensorboard",
}


class ConfigError(ValueError):
    """A recipe or an override is missing, misspelled or out of range."""


def recipe_path(name_or_path: str | Path) -> Path:
    """The TOML file of a shipped recipe name, or the given path."""
    text = str(name_or_path)
    if text in RECIPE_NAMES:
        return RECIPES_DIR / f"{text}.toml"
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"config {text!r} is neither a shipped recipe ({', '.join(RECIPE_NAMES)}) nor an existing TOML file"
        )
    return path


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _merge(base: dict, update: dict, where: str = "") -> dict:
    for key, value in update.items():
        dotted = f"{where}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"unknown config field {dotted!r}; fields here are: {known}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config field {dotted!r} is a table; got {value!r}")
            _merge(base[key], value, dotted + ".")
        else:
            base[key] = value
    return base


def parse_value(text: str):
    """A command-line value as TOML (numbers, booleans, arrays, quoted strings), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"--set expects table.field=VALUE, got {item!r}")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects table.field=VALUE, got {item!r}")
    return key, parse_value(text.strip())


def set_field(config: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = config
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
            raise ConfigError(f"unknown config field {dotted!r} (no {part!r} in {where}; known: {known})")
        if i == len(parts) - 1:
            if isinstance(node[part], dict):
                raise ConfigError(
                    f"{dotted!r} is a table; set one of its fields, e.g. {dotted}.{next(iter(node[part]))}"
                )
            node[part] = value
        else:
            node = node[part]


def get_field(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def load_config(source: str | Path | None, overrides: list[tuple[str, object]] = ()) -> dict:
    """Defaults <- recipe file <- overrides, validated. ``source`` None: the defaults alone."""
    config = copy.deepcopy(DEFAULTS)
    if source is not None:
        path = recipe_path(source)
        _merge(config, read_toml(path))
    for key, value in overrides:
        set_field(config, key, value)
    validate(config)
    return config


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_range_or_number(value, field: str, low: float = 0.0) -> None:
    if _is_number(value):
        if value < low:
            raise ConfigError(f"{field} must be >= {low}, got {value}")
        return
    if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        if not low <= value[0] <= value[1]:
            raise ConfigError(f"{field} range must be [low, high] with {low} <= low <= high, got {value}")
        return
    raise ConfigError(f"{field} must be a number or a [low, high] range, got {value!r}")


def validate(config: dict) -> None:
    """Raise ConfigError naming the field and the expected value for anything wrong."""
    for (table, field), allowed in _CHOICES.items():
        if config[table][field] not in allowed:
            raise ConfigError(f"{table}.{field} must be one of {', '.join(allowed)}; got {config[table][field]!r}")
    model, data, noise, train, schedule, output = (
        config[k] for k in ("model", "data", "noise", "train", "schedule", "output")
    )
    if not isinstance(config["seed"], int) or isinstance(config["seed"], bool) or config["seed"] < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {config['seed']!r}")
    if not isinstance(config["name"], str) or not config["name"].strip():
        raise ConfigError("name must be a non-empty string (it names the checkpoints)")
    if model["in_channels"] not in (1, 3) or model["out_channels"] not in (1, 3):
        raise ConfigError(
            f"model.in_channels and model.out_channels must be 1 or 3, got {model['in_channels']}/{model['out_channels']}"
        )
    if not _is_number(model["aug_level"]) or model["aug_level"] < 0:
        raise ConfigError(f"model.aug_level must be a number >= 0, got {model['aug_level']!r}")
    crop = data["crop_size"]
    if not isinstance(crop, int) or crop < 16 or crop % 16:
        raise ConfigError(f"data.crop_size must be a positive multiple of 16 (the network's size rule), got {crop!r}")
    for field in ("batch_size", "cache_images"):
        if not isinstance(data[field], int) or data[field] < (1 if field == "batch_size" else 0):
            raise ConfigError(f"data.{field} must be a positive integer, got {data[field]!r}")
    if not isinstance(data["exclude"], list) or not all(isinstance(s, str) for s in data["exclude"]):
        raise ConfigError(f"data.exclude must be a list of strings, got {data['exclude']!r}")
    if data["kind"] == "pairs" and noise["kind"] != "none":
        raise ConfigError("data.kind = 'pairs' brings its own noisy images: set noise.kind = 'none'")
    if data["kind"] != "pairs" and noise["kind"] == "none":
        raise ConfigError("noise.kind = 'none' needs prepared pairs: set data.kind = 'pairs' and data.noisy")
    _check_range_or_number(noise["sigma"], "noise.sigma")
    if noise["kind"] == "poisson_gaussian":
        _check_range_or_number(noise["peak"], "noise.peak")
        if (noise["peak"] if _is_number(noise["peak"]) else noise["peak"][0]) <= 0:
            raise ConfigError(f"noise.peak must be > 0 for poisson_gaussian noise, got {noise['peak']!r}")
    if not isinstance(train["iterations"], int) or train["iterations"] < 1:
        raise ConfigError(f"train.iterations must be a positive integer, got {train['iterations']!r}")
    for field in ("lr", "weight_decay", "grad_clip_norm", "mixup_beta", "max_minutes"):
        if not _is_number(train[field]) or train[field] < 0:
            raise ConfigError(f"train.{field} must be a number >= 0, got {train[field]!r}")
    if not isinstance(train["threads"], int) or isinstance(train["threads"], bool) or train["threads"] < 0:
        raise ConfigError(f"train.threads must be an integer >= 0 (0: torch's default), got {train['threads']!r}")
    if not _is_number(train["mixup_prob"]) or not 0 <= train["mixup_prob"] <= 1:
        raise ConfigError(f"train.mixup_prob must be in [0, 1], got {train['mixup_prob']!r}")
    if train["mixup_prob"] > 0 and train["mixup_beta"] <= 0:
        raise ConfigError(f"train.mixup_beta must be > 0, got {train['mixup_beta']!r}")
    betas = train["betas"]
    if not (isinstance(betas, list) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {betas!r}")
    periods, eta_mins, weights = schedule["periods"], schedule["eta_mins"], schedule["restart_weights"]
    if not (isinstance(periods, list) and periods and all(isinstance(p, int) and p > 0 for p in periods)):
        raise ConfigError(f"schedule.periods must be a list of positive integers, got {periods!r}")
    for field, values in (("eta_mins", eta_mins), ("restart_weights", weights)):
        if not (
            isinstance(values, list) and len(values) == len(periods) and all(_is_number(v) and v >= 0 for v in values)
        ):
            raise ConfigError(f"schedule.{field} must list one number >= 0 per period ({len(periods)}), got {values!r}")
    for field in ("checkpoint_every", "log_every", "val_every", "val_max_size"):
        if not isinstance(output[field], int) or output[field] < 0:
            raise ConfigError(f"output.{field} must be an integer >= 0 (0 disables), got {output[field]!r}")
    if output["val_max_size"] and output["val_max_size"] % 16:
        raise ConfigError(f"output.val_max_size must be a multiple of 16, got {output['val_max_size']}")
    _check_range_or_number(output["val_sigma"], "output.val_sigma")


def output_dir(config: dict) -> Path:
    return Path(str(config["output"]["dir"]).replace("{name}", config["name"])).expanduser()


# ---------------------------------------------------------------- TOML writing
def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(config: dict) -> str:
    """The configuration as TOML text that :func:`load_config` reads back to the same dict."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, fields in config.items():
        if isinstance(fields, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"
