r"""Train or fine-tune a CLIPDenoiser decoder: ``python -m napari_clipdenoise.training.train CONFIG``.

CONFIG is a shipped recipe (``gaussian15``, ``srgb``, ``ldct``) or a TOML file.
Every field can be overridden: ``--set table.field=VALUE`` or the shortcuts below.

Examples
--------
Reference recipe on your clean images, with OpenAI's CLIP RN50 file::

    python -m napari_clipdenoise.training.train gaussian15 --data CBSD432/ --clip-weights RN50.pt

Fine-tune a released model on your own clean micrographs for 5k iterations::

    python -m napari_clipdenoise.training.train gaussian15 --data my_clean_tiffs/ --init-checkpoint net_g_latest.pth \\
        --iterations 5000 --set schedule.scale_to_iterations=true

Continue an interrupted run exactly where it stopped::

    python -m napari_clipdenoise.training.train --resume runs/gaussian15

The run folder gets ``{name}.safetensors`` (project format, loads in the plugin and
``clipdenoise``), ``{name}_iterNNNNNNN.safetensors`` every ``output.checkpoint_every``
iterations, ``state_latest.pt`` (resumable state), ``train_log.csv`` and ``config.toml``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from .config import (
    RECIPE_NAMES,
    RESUMABLE_OVERRIDES,
    ConfigError,
    load_config,
    output_dir,
    parse_override,
    parse_value,
    set_field,
    to_toml,
    validate,
)
from .data import DataError

STATE_FORMAT = "napari-clipdenoise-train-state"
STATE_FILE = "state_latest.pt"
LOG_FILE = "train_log.csv"
LOG_COLUMNS = ("iteration", "loss", "lr", "val_psnr", "throughput", "elapsed_s")

#: Command-line shortcuts: option -> config field.
SHORTCUTS = {
    "data": "data.train",
    "noisy": "data.noisy",
    "val_data": "data.val",
    "out": "output.dir",
    "name": "name",
    "iterations": "train.iterations",
    "batch_size": "data.batch_size",
    "crop_size": "data.crop_size",
    "lr": "train.lr",
    "seed": "seed",
    "device": "train.device",
    "precision": "train.precision",
    "clip_weights": "model.clip_weights",
    "init_checkpoint": "model.init_checkpoint",
    "encoder_bn": "model.encoder_bn",
    "max_minutes": "train.max_minutes",
    "threads": "train.threads",
    "checkpoint_every": "output.checkpoint_every",
    "val_every": "output.val_every",
    "log_every": "output.log_every",
}


class TrainingError(RuntimeError):
    """Training cannot start or continue (the message says what to do)."""


# ------------------------------------------------------------------ network
def describe_noise(config: dict) -> str:
    noise, data = config["noise"], config["data"]
    if noise["kind"] == "none":
        return f"prepared noisy/clean pairs ({Path(str(data['noisy'])).name or 'noisy folder'})"
    sigma = noise["sigma"]
    sigma_text = f"{sigma[0]}-{sigma[1]}" if isinstance(sigma, list) else f"{sigma}"
    if noise["kind"] == "gaussian":
        text = f"gaussian sigma {sigma_text}/255 (online)"
    else:
        peak = noise["peak"]
        peak_text = f"{peak[0]}-{peak[1]}" if isinstance(peak, list) else f"{peak}"
        text = f"poisson peak {peak_text} + gaussian sigma {sigma_text}/255 (online)"
    return text + (", clipped to [0, 1]" if noise["clip"] else "")


def build_network(config: dict):
    """The network to train and a dict of what initialised it (for the checkpoint metadata).

    Decoder weights start from torch's default initialisation under ``seed`` (as the
    reference), the encoder from CLIP RN50 weights, a checkpoint, or (explicitly
    asked for) random weights.
    """
    import torch

    from ..errors import CheckpointError
    from ..model.checkpoints import fetch_clip_encoder_weights_open_clip, file_sha256, load_clip_encoder_weights
    from ..model.loading import load_checkpoint
    from ..model.network import CLIPDenoiser, NetworkConfig, init_random_weights

    model = config["model"]
    clip_weights, init_checkpoint, random_encoder = (
        model["clip_weights"],
        model["init_checkpoint"],
        model["random_encoder"],
    )
    chosen = [bool(clip_weights), bool(init_checkpoint), bool(random_encoder)]
    if sum(chosen) == 0:
        raise TrainingError(
            "no CLIP RN50 weights for the encoder. Pass one of:\n"
            "  --clip-weights PATH      OpenAI's RN50.pt (TorchScript) or an open_clip RN50 .bin/.safetensors file\n"
            "  --clip-weights open_clip download them with open_clip (needs internet and"
            " pip install 'napari-clipdenoise[clip]')\n"
            "  --init-checkpoint PATH   fine-tune an existing checkpoint (reference .pth or project .safetensors)\n"
            "  --random-encoder         a randomly initialised encoder: only for tests and ablations, NOT the method"
        )
    if sum(chosen) > 1:
        raise TrainingError(
            "choose one encoder source: --clip-weights, --init-checkpoint or --random-encoder (got "
            + ", ".join(
                n for n, c in zip(("clip weights", "init checkpoint", "random encoder"), chosen, strict=True) if c
            )
            + ")"
        )
    torch.manual_seed(config["seed"])
    source: dict = {"random_encoder": bool(random_encoder)}
    if init_checkpoint:
        loaded = load_checkpoint(init_checkpoint)
        loaded_config = loaded.network.config
        if (loaded_config.in_channels, loaded_config.out_channels) != (model["in_channels"], model["out_channels"]):
            raise TrainingError(
                f"{init_checkpoint} is a {loaded_config.in_channels}->{loaded_config.out_channels} channel model but the"
                f" recipe asks for {model['in_channels']}->{model['out_channels']}; set model.in_channels/out_channels"
                " to match or use another checkpoint"
            )
        network = CLIPDenoiser(
            NetworkConfig(
                model["in_channels"],
                model["out_channels"],
                bias=loaded_config.bias,
                feature_aug_level=model["aug_level"],
            )
        )
        network.load_state_dict(loaded.network.state_dict())
        source["init_checkpoint"] = {
            "file": Path(init_checkpoint).name,
            "format": loaded.format,
            "sha256": loaded.metadata.get("source_sha256") or file_sha256(init_checkpoint),
            "random_encoder": bool(loaded.metadata.get("random_encoder", False)),
        }
        source["random_encoder"] = source["init_checkpoint"]["random_encoder"]
    else:
        network = CLIPDenoiser(
            NetworkConfig(
                model["in_channels"],
                model["out_channels"],
                bias=False,
                feature_aug_level=model["aug_level"],
            )
        )
        if random_encoder:
            decoder = {k: v.clone() for k, v in network.state_dict().items() if not k.startswith("encoder.")}
            init_random_weights(network, config["seed"])
            network.load_state_dict(decoder, strict=False)
        elif str(clip_weights) == "open_clip":
            network.encoder.load_state_dict(fetch_clip_encoder_weights_open_clip())
            source["clip_weights"] = {"source": "open_clip RN50-quickgelu pretrained=openai"}
        else:
            path = Path(clip_weights).expanduser()
            if not path.is_file():
                raise TrainingError(f"CLIP weights file not found: {path}")
            # The user named this file explicitly; a .pt is OpenAI's TorchScript RN50.pt.
            state = load_clip_encoder_weights(path, trust_torchscript=path.suffix.lower() == ".pt")
            network.encoder.load_state_dict(state)
            source["clip_weights"] = {"file": path.name, "sha256": file_sha256(path)}
    if not isinstance(network, CLIPDenoiser):  # pragma: no cover - defensive
        raise CheckpointError("internal error: not a CLIPDenoiser")
    network.encoder_bn_mode = model["encoder_bn"]
    return network, source


# ------------------------------------------------------------------ rng state
def capture_rng_state() -> dict:
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    import torch

    random.setstate(_as_tuple(state["python"]))
    legacy = state["numpy"]
    np.random.set_state(
        (
            legacy["name"],
            np.asarray(legacy["keys"], np.uint32),
            legacy["pos"],
            legacy["has_gauss"],
            legacy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------------ logging
class RunLog:
    """CSV log (always), TensorBoard (when installed and enabled)."""

    def __init__(self, folder: Path, start_iteration: int, tensorboard: bool):
        self.path = folder / LOG_FILE
        rows = []
        if start_iteration and self.path.is_file():  # resuming: drop rows past the resumed iteration
            with open(self.path, newline="") as handle:
                rows = [
                    r for r in csv.DictReader(handle) if r.get("iteration") and int(r["iteration"]) <= start_iteration
                ]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, LOG_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(folder / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self.writer = None

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, LOG_COLUMNS).writerow({k: row.get(k, "") for k in LOG_COLUMNS})
        if self.writer is not None:
            for key in ("loss", "lr", "val_psnr", "throughput"):
                if row.get(key) not in ("", None):
                    self.writer.add_scalar(f"train/{key}", float(row[key]), int(row["iteration"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict:
    """Read a resumable state file (``weights_only=True``: plain tensors and Python data only)."""
    import torch

    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"no resumable state at {path}; give the run folder or its {STATE_FILE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"could not read the training state {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path} is not a napari-clipdenoise training state")
    return state


# ------------------------------------------------------------------ training
def validate_psnr(network, val_set, device) -> float:
    """Mean PSNR (dB, data range 1) of the clamped network output on the validation set."""
    import torch

    from ..metrics import psnr

    network.eval()
    values = []
    with torch.inference_mode():
        for _, clean, noisy in val_set:
            out = network(torch.from_numpy(noisy)[None].to(device)).clamp(0, 1)[0].float().cpu().numpy()
            values.append(float(psnr(clean, out, data_range=1.0)))
    network.train()
    return float(np.mean(values)) if values else float("nan")


def train(
    config: dict,
    *,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool | None = None,
    log=print,
) -> dict:
    """Run training from ``config`` (or continue ``resume``); return a summary dict.

    ``stop_after`` ends the run after that iteration as an interruption would
    (resumable state written, no final checkpoint).
    """
    import torch
    from torch.nn import functional as F

    from ..inference.device import resolve_device
    from ..model.checkpoints import save_checkpoint
    from .augment import apply_mixup, mixup_params
    from .data import PatchSampler, load_validation_set, training_input_scale
    from .schedule import CyclicCosineLR, scaled_periods

    state = None
    if resume is not None:
        state = load_state(Path(resume))
    train_cfg, out_cfg = config["train"], config["output"]
    folder = output_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    device = resolve_device(train_cfg["device"])
    if train_cfg["threads"]:
        torch.set_num_threads(int(train_cfg["threads"]))
    seed = int(config["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    if state is not None:
        from ..model.network import CLIPDenoiser, NetworkConfig

        network = CLIPDenoiser(NetworkConfig.from_dict(state["network_config"]))
        network.load_state_dict(state["network"])
        network.encoder_bn_mode = config["model"]["encoder_bn"]
        source = dict(state["source"])
    else:
        network, source = build_network(config)
    network.to(device).train()
    sampler = PatchSampler(config, seed)
    val_set = load_validation_set(config, seed)
    input_scale = training_input_scale(config["data"]["kind"], sampler.files)  # what the network is fed on [0, 1]

    parameters = network.trainable_parameters()
    optimizer = torch.optim.AdamW(
        parameters,
        lr=train_cfg["lr"],
        betas=tuple(train_cfg["betas"]),
        weight_decay=train_cfg["weight_decay"],
    )
    schedule = config["schedule"]
    total = int(train_cfg["iterations"])
    periods = scaled_periods(schedule["periods"], total) if schedule["scale_to_iterations"] else schedule["periods"]
    scheduler = CyclicCosineLR(optimizer, periods, schedule["eta_mins"], schedule["restart_weights"])
    start, elapsed_before = 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        restore_rng_state(state["rng"])
        start, elapsed_before = int(state["iteration"]), float(state.get("elapsed_s", 0.0))
        if start >= total:
            raise TrainingError(
                f"the run being resumed already did {start} of {total} iterations; pass a larger --iterations to continue"
            )
    (folder / "config.toml").write_text(to_toml(config))

    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if train_cfg["precision"] == "bf16"
        else contextlib.nullcontext()
    )
    run_log = RunLog(folder, start, bool(out_cfg["tensorboard"]))
    show_progress = out_cfg["progress"] if progress is None else progress
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc=config["name"], unit="it", dynamic_ncols=True)

    def metadata(iteration: int, **extra) -> dict:
        return {
            "name": config["name"],
            "description": config["description"],
            "noise": describe_noise(config),
            "recipe": config,
            "iterations": iteration,
            "encoder_bn": config["model"]["encoder_bn"],
            "input_scale": input_scale.as_record(),
            "training_data": {"folder": str(config["data"]["train"]), "files": len(sampler)},
            **source,
            **extra,
        }

    def save_state(iteration: int, elapsed: float) -> Path:
        path = folder / STATE_FILE
        _atomic_torch_save(
            {
                "format": STATE_FORMAT,
                "version": 1,
                "iteration": iteration,
                "config": config,
                "network_config": network.config.to_dict(),
                "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "sampler": sampler.state_dict(),
                "rng": capture_rng_state(),
                "source": source,
                "elapsed_s": elapsed,
            },
            path,
        )
        return path

    clip_norm = float(train_cfg["grad_clip_norm"])
    time_limit = float(train_cfg["max_minutes"]) * 60.0
    began = time.perf_counter()
    window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
    iteration, last_loss, last_val = start, float("nan"), None
    stopped = "completed"
    try:
        while iteration < total:
            iteration += 1
            lr = optimizer.param_groups[0]["lr"]
            clean, noisy = sampler.next_batch()
            target = torch.from_numpy(clean).to(device)
            inputs = torch.from_numpy(noisy).to(device)
            mix = mixup_params(sampler.rng, target.shape[0], train_cfg["mixup_prob"], train_cfg["mixup_beta"])
            if mix is not None:
                target, inputs = apply_mixup(target, inputs, *mix)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                output = network(inputs)
            loss = F.l1_loss(output.float(), target)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at iteration {iteration}; lower train.lr or use precision fp32"
                )
            loss.backward()
            if clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
            optimizer.step()
            scheduler.step()
            last_loss = float(loss.detach())
            window_loss += last_loss
            window_count += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            elapsed = elapsed_before + time.perf_counter() - began
            out_of_time = bool(time_limit) and elapsed >= time_limit
            at_end = iteration == total or out_of_time or iteration == stop_after
            val_psnr = ""
            if val_set and ((out_cfg["val_every"] and iteration % out_cfg["val_every"] == 0) or at_end):
                last_val = validate_psnr(network, val_set, device)
                val_psnr = f"{last_val:.4f}"
            if (out_cfg["log_every"] and iteration % out_cfg["log_every"] == 0) or at_end or val_psnr:
                now = time.perf_counter()
                run_log.write(
                    {
                        "iteration": iteration,
                        "loss": f"{window_loss / max(window_count, 1):.6f}",
                        "lr": f"{lr:.6e}",
                        "val_psnr": val_psnr,
                        "throughput": f"{window_count * sampler.batch_size / max(now - window_start, 1e-9):.3f}",
                        "elapsed_s": f"{elapsed:.1f}",
                    }
                )
                window_loss, window_count, window_start = 0.0, 0, now
            if out_cfg["checkpoint_every"] and iteration % out_cfg["checkpoint_every"] == 0 and iteration != total:
                save_checkpoint(
                    network, folder / f"{config['name']}_iter{iteration:07d}.safetensors", metadata(iteration)
                )
                save_state(iteration, elapsed)
            if iteration == stop_after and iteration != total:
                stopped = "stopped"
                break
            if out_of_time:
                stopped = "time_limit"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if bar is not None:
            bar.close()
        run_log.close()
    elapsed = elapsed_before + time.perf_counter() - began
    state_path = save_state(iteration, elapsed)
    summary = {
        "iterations": iteration,
        "total": total,
        "status": stopped,
        "final_loss": last_loss,
        "val_psnr": last_val,
        "elapsed_s": elapsed,
        "state": str(state_path),
        "output_dir": str(folder),
    }
    if stopped in ("completed", "time_limit"):
        extra = {"final_loss": last_loss, "stopped_early": stopped == "time_limit"}
        if last_val is not None:
            extra["val_psnr"] = last_val
        path = folder / f"{config['name']}.safetensors"
        save_checkpoint(network, path, metadata(iteration, **extra))
        summary["checkpoint"] = str(path)
        log(f"wrote {path} ({iteration} iterations; load it with clipdenoise/napari or napari_clipdenoise.load_model)")
    else:
        log(
            f"stopped at iteration {iteration} of {total}; continue with: python -m napari_clipdenoise.training.train --resume {folder}"
        )
    with open(folder / "summary.json", "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipdenoise-train",
        description="Train or fine-tune a CLIPDenoiser decoder (Cheng et al., CVPR 2024) from a TOML recipe.",
        epilog=(
            f"Shipped recipes: {', '.join(RECIPE_NAMES)}. Any field: --set table.field=VALUE (TOML value),"
            " e.g. --set noise.sigma=[5,50] --set train.mixup_prob=0. See docs/training.md."
        ),
    )
    parser.add_argument("config", nargs="?", help="recipe name (gaussian15, srgb, ldct) or path to a TOML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any config field (repeatable)",
    )
    parser.add_argument("--data", help="folder of clean training images (data.train)")
    parser.add_argument("--noisy", help="folder of noisy images paired by file name (data.noisy, pairs recipes)")
    parser.add_argument("--val-data", help="folder of clean validation images (data.val)")
    parser.add_argument("--out", help="run folder (output.dir); default runs/<name>")
    parser.add_argument("--name", help="model name (names the checkpoint files)")
    parser.add_argument("--iterations", help="number of iterations (train.iterations)")
    parser.add_argument("--batch-size", help="patches per step (data.batch_size)")
    parser.add_argument("--crop-size", help="patch size, multiple of 16 (data.crop_size)")
    parser.add_argument("--lr", help="base learning rate (train.lr)")
    parser.add_argument("--seed", help="random seed (seed)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (train.device)")
    parser.add_argument("--precision", help="fp32 or bf16 autocast (train.precision)")
    parser.add_argument(
        "--clip-weights", help="CLIP RN50 weights: RN50.pt, open_clip .bin/.safetensors, or 'open_clip'"
    )
    parser.add_argument(
        "--init-checkpoint", help="fine-tune from this checkpoint (reference .pth or project .safetensors)"
    )
    parser.add_argument(
        "--random-encoder",
        action="store_true",
        help="random encoder weights instead of CLIP (tests/ablations only; recorded in the checkpoint)",
    )
    parser.add_argument(
        "--encoder-bn", help="reference (BN in train mode, as the authors) or frozen (model.encoder_bn)"
    )
    parser.add_argument("--threads", help="CPU threads for torch (train.threads; 0 = default)")
    parser.add_argument("--max-minutes", help="stop after this wall time and write the final checkpoint")
    parser.add_argument("--checkpoint-every", help="write a checkpoint every N iterations (output.checkpoint_every)")
    parser.add_argument("--val-every", help="validate every N iterations (output.val_every)")
    parser.add_argument("--log-every", help="log a CSV row every N iterations (output.log_every)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="RUN",
        help="continue from a run folder or its state_latest.pt (default: the configured run folder)",
    )
    parser.add_argument("--stop-after", type=int, help="stop after this iteration as if interrupted (resumable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    return parser


def resolve_from_args(args: argparse.Namespace) -> tuple[dict, Path | None]:
    overrides = [parse_override(item) for item in args.overrides]
    for option, field in SHORTCUTS.items():
        value = getattr(args, option)
        if value is not None:
            overrides.append(
                (
                    field,
                    parse_value(value)
                    if field
                    not in (
                        "data.train",
                        "data.noisy",
                        "data.val",
                        "output.dir",
                        "name",
                        "model.clip_weights",
                        "model.init_checkpoint",
                    )
                    else value,
                )
            )
    if args.random_encoder:
        overrides.append(("model.random_encoder", True))
    resume_path = None
    if args.resume is not None:
        if args.resume:
            resume_path = Path(args.resume).expanduser()
        elif args.config:
            resume_path = output_dir(
                load_config(args.config, [o for o in overrides if o[0] in RESUMABLE_OVERRIDES or o[0] == "name"])
            )
        else:
            raise ConfigError("--resume needs the run folder (or a CONFIG whose output folder holds the run)")
        state = load_state(resume_path)
        config = state["config"]
        for key, value in overrides:
            if key in RESUMABLE_OVERRIDES:
                set_field(config, key, value)
            elif _differs(config, key, value):
                raise ConfigError(
                    f"{key} cannot change when resuming (the run used a different value); start a new run or fine-tune"
                    " with --init-checkpoint"
                )
        validate(config)
        return config, resume_path
    if not args.config:
        raise ConfigError(f"give a CONFIG: one of {', '.join(RECIPE_NAMES)} or a TOML file (or --resume RUN)")
    return load_config(args.config, overrides), None


def _differs(config: dict, key: str, value) -> bool:
    from .config import get_field

    try:
        return get_field(config, key) != value
    except (KeyError, TypeError):
        return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, resume = resolve_from_args(args)
        if args.print_config:
            sys.stdout.write(to_toml(config))
            return 0
        if not config["data"]["train"]:
            raise ConfigError("no training data: pass --data DIR (a folder of clean images) or --set data.train=DIR")
        summary = train(config, resume=resume, stop_after=args.stop_after, progress=False if args.no_progress else None)
    except (ConfigError, DataError, TrainingError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if not (isinstance(v, float) and math.isnan(v))}, indent=2))
    return 0 if summary["status"] in ("completed", "time_limit", "stopped") else 130


if __name__ == "__main__":
    sys.exit(main())
