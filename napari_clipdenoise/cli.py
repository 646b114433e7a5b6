"""The ``clipdenoise`` command: argument parsing and dispatch only.

The work is done by :mod:`napari_clipdenoise.io` (files, batch) and the model
core. torch is imported only after the arguments are checked and only by the
commands that need it, so mistakes and a missing model are reported at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from ._version import __version__
from .inference.defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_MODEL = "gaussian15"


class CommandError(Exception):
    """A problem found before any work; printed as ``clipdenoise: error: ...`` with exit code 2."""


# --------------------------------------------------------------------------- parser
def _tile_size(text: str) -> int | None:
    if text.lower() in ("none", "0", "whole"):
        return None
    value = int(text)
    if value < 16 or value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16 or 'none', got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _intensity_range(text: str) -> str | tuple[float, float]:
    if text in ("auto", "percentile", "dtype"):
        return text
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be auto, percentile, dtype or LOW,HIGH (e.g. -1024,3072), got {text}"
        ) from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be smaller than HIGH, got {text}")
    return (low, high)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipdenoise",
        description="Denoise images with a frozen-CLIP denoiser (Cheng et al., CVPR 2024); manage models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "denoise",
        help="denoise files, folders or glob patterns",
        description="Denoise images into <stem>_denoised.<ext> files (same format, shape and dtype), with provenance."
        " Formats: TIFF (incl. ImageJ, OME), PNG, JPEG, NPY, zarr arrays.",
    )
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns (quote them)")
    run.add_argument("-o", "--output-dir", type=Path, help="where results go (created; default: next to each input)")
    run.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help="installed model name or checkpoint path (default: %(default)s)"
    )
    run.add_argument(
        "--axes", help="axes of every input, e.g. YX, ZYX, YXS, CZYX (default: from metadata, else guessed)"
    )
    run.add_argument(
        "--tile-size",
        type=_tile_size,
        default=DEFAULT_TILE_SIZE,
        help="largest tile edge in px, multiple of 16 (tiles shrink to fit each axis evenly), or 'none' (default: %(default)s)",
    )
    run.add_argument(
        "--overlap",
        type=_non_negative,
        default=DEFAULT_OVERLAP,
        help="overlap between tiles in px (default: %(default)s)",
    )
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    run.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="(default: %(default)s)"
    )
    run.add_argument("--batch-size", type=_positive, help="tiles per forward pass (default: 1 on CPU, more on GPUs)")
    run.add_argument(
        "--threads",
        type=_positive,
        help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)",
    )
    run.add_argument(
        "--intensity-range",
        type=_intensity_range,
        default="auto",
        metavar="auto|percentile|dtype|LOW,HIGH",
        help="how values map to the network's [0, 1] (default: auto); CT in HU with ldct: --intensity-range=-1024,3072",
    )
    run.add_argument("--output-dtype", help="e.g. float32 (default: the input's dtype)")
    run.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: skip them)")
    run.add_argument("-r", "--recursive", action="store_true", help="also process subfolders (and ** in patterns)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file messages")
    run.add_argument("--report", type=Path, metavar="FILE.json", help="write one record per input to this JSON file")
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS|local[:N]",
        help="denoise zarr inputs on a dask scheduler (tcp://host:8786) or a local cluster of N workers",
    )
    run.set_defaults(handler=command_denoise)

    models = commands.add_parser("models", help="list, inspect, import models; show the cache folder")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="models in the registry and in the cache").set_defaults(handler=command_models_list)
    info = sub.add_parser("info", help="details of one model (registry name, installed name or file)")
    info.add_argument("name")
    info.set_defaults(handler=command_models_info)
    imp = sub.add_parser("import", help="validate a checkpoint (file or http(s) URL) and install it under a name")
    imp.add_argument("source", metavar="FILE_OR_URL")
    imp.add_argument("--name", required=True, help="name to install it as, e.g. gaussian15")
    imp.add_argument("--sha256", help="expected sha256 of the file")
    imp.add_argument("--overwrite", action="store_true", help="replace an installed model of that name")
    imp.set_defaults(handler=command_models_import)
    path = sub.add_parser("path", help="the cache folder (or an installed model's file)")
    path.add_argument("name", nargs="?")
    path.set_defaults(handler=command_models_path)
    remove = sub.add_parser("remove", help="delete an installed model from the cache")
    remove.add_argument("name")
    remove.set_defaults(handler=command_models_remove)

    commands.add_parser("info", help="versions, devices and the model cache").set_defaults(handler=command_info)
    return parser


# ------------------------------------------------------------------------- denoise
def check_model_source(spec: str) -> None:
    """Fail fast (no torch import) when ``spec`` names neither a file nor an installed model."""
    from .model.registry import install_hint, installed_path

    path = Path(spec).expanduser()
    looks_like_path = path.suffix != "" or os.sep in spec or (os.altsep is not None and os.altsep in spec)
    if path.is_file():
        return
    if looks_like_path:
        raise CommandError(f"checkpoint file not found: {path}")
    try:
        if installed_path(spec).is_file():
            return
    except OSError:
        pass
    raise CommandError(install_hint(spec))


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (temporary outputs removed) but exiting with 128 + 15."""

    exit_code = 128 + signal.SIGTERM


def _interrupt_on_sigterm() -> None:
    def handler(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


def command_denoise(args) -> int:
    from .io.batch import DenoiseSettings, process_job
    from .io.discovery import check_output_folders, expand_inputs, plan_outputs
    from .io.progress import BatchProgress
    from .io.report import FileRecord, summary, summary_line, write_report

    check_model_source(args.model)
    if args.tile_size is not None and args.overlap >= args.tile_size:
        raise CommandError(f"--overlap ({args.overlap}) must be smaller than --tile-size ({args.tile_size})")
    output_dtype = None
    if args.output_dtype:
        import numpy as np

        try:
            output_dtype = np.dtype(args.output_dtype)
        except TypeError as exc:
            raise CommandError(
                f"--output-dtype {args.output_dtype!r} is not a dtype; use e.g. uint16 or float32"
            ) from exc
        if output_dtype.kind not in "uif":
            raise CommandError(f"--output-dtype must be an integer or float type, got {output_dtype}")
    if args.scheduler:
        from .io.distributed_bridge import load_engine

        try:
            load_engine()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc

    jobs = plan_outputs(
        expand_inputs(args.inputs, recursive=args.recursive, exclude=[args.report] if args.report else []),
        args.output_dir,
    )
    if not jobs:
        raise CommandError("no input files found")
    problems = check_output_folders(jobs, create=args.output_dir is not None)
    if problems:
        raise CommandError(
            "cannot write to the output folder(s):\n    "
            + "\n    ".join(problems)
            + "\nChoose a writable folder with -o OUTDIR."
        )

    pending = [j for j in jobs if not j.error and (args.overwrite or args.scheduler or not j.output.exists())]
    if pending:
        model, settings, model_info = _load_model_and_settings(args, output_dtype)
    else:  # everything is done or failed already: no need to import torch and load the model
        model, model_info = None, {"name": args.model}
        settings = DenoiseSettings(
            axes=args.axes,
            tile_size=args.tile_size,
            overlap=args.overlap,
            device=args.device,
            precision=args.precision,
            overwrite=args.overwrite,
            model_spec=args.model,
        )
    settings_info = {k: v for k, v in vars(settings).items() if k != "extra"}
    progress = BatchProgress(len(jobs), quiet=args.quiet)
    if model is not None:
        progress.message(
            f"model {model_info['name']} ({model_info.get('sha256') or 'no sha256'}) on {settings.device},"
            f" {settings.precision}, tiles {settings.tile_size} overlap {settings.overlap}, batch {settings.batch_size}"
        )
    records: list = []
    started = time.perf_counter()
    interrupted = None
    try:
        for job in jobs:
            progress.start_file(job.input.name)
            record = process_job(job, model, settings, model_info, progress)
            records.append(record)
            progress.end_file()
            if record.status == "failed":
                progress.error(f"FAILED {record.input}: {record.error}")
            elif record.status == "skipped":
                progress.message(f"skipped {record.input}: {'; '.join(record.notes)}")
    except KeyboardInterrupt as exc:
        interrupted = exc
        done = {r.input for r in records}
        current = next((j for j in jobs if str(j.input) not in done), None)
        for job in jobs:
            if str(job.input) not in done:
                status = "interrupted" if job is current else "not started"
                error = "interrupted before it finished; no output was written" if job is current else None
                records.append(FileRecord(str(job.input), status, str(job.output) if job.output else None, error))
    finally:
        progress.close()
    info = summary(records, time.perf_counter() - started)
    if args.report:
        write_report(args.report, records, info, settings_info)
    failed = [r for r in records if r.status == "failed"]
    if failed:
        print(f"{len(failed)} input(s) failed:", file=sys.stderr)
        for record in failed:
            print(f"  {record.input}: {record.error}", file=sys.stderr)
    if not args.quiet or failed or interrupted is not None:
        print(summary_line(info), file=sys.stderr)
    if interrupted is not None:
        print("interrupted: unfinished outputs were removed; run the same command again to resume", file=sys.stderr)
        return getattr(interrupted, "exit_code", EXIT_INTERRUPTED)
    return EXIT_FAILED if failed else EXIT_OK


def _load_model_and_settings(args, output_dtype):
    from .errors import CheckpointError, ModelNotInstalledError
    from .inference.device import default_batch_size, resolve_device, resolve_precision
    from .io.batch import DenoiseSettings
    from .model.checkpoints import file_sha256
    from .model.registry import load_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
    except (CheckpointError, ModelNotInstalledError) as exc:
        raise CommandError(str(exc)) from exc
    try:
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    batch_size = args.batch_size or default_batch_size(device, args.tile_size)
    model_spec = str(Path(args.model).expanduser().resolve()) if Path(args.model).expanduser().is_file() else args.model
    settings = DenoiseSettings(
        axes=args.axes.upper() if args.axes else None,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=batch_size,
        device=str(device),
        precision=precision,
        output_dtype=str(output_dtype) if output_dtype is not None else None,
        intensity_range=args.intensity_range,
        overwrite=args.overwrite,
        scheduler=args.scheduler,
        model_spec=model_spec,
        extra={"device": args.device, "precision": args.precision, "batch_size": args.batch_size},
    )
    model_info = dict(model.provenance())
    model_info["sha256"] = model.sha256
    if model.path is not None:
        model_info["file"] = str(model.path)
        model_info["file_sha256"] = file_sha256(model.path)
    if model.metadata.get("random_weights"):
        model_info["random_weights"] = True
    return model, settings, model_info


# -------------------------------------------------------------------------- models
def command_models_list(args) -> int:
    from .model.registry import REGISTRY, cache_dir, installed_models, installed_path

    installed = set(installed_models())
    print(f"model cache: {cache_dir()}")
    for name, entry in REGISTRY.items():
        state = f"installed ({installed_path(name)})" if name in installed else "not installed"
        print(f"  {name:<12} {entry.in_channels}-ch  {state}\n      {entry.description}\n      source: {entry.source}")
    for name in sorted(installed - set(REGISTRY)):
        print(f"  {name:<12} installed ({installed_path(name)})")
    if not installed:
        print("no model installed yet: clipdenoise models import PATH/TO/net_g_latest.pth --name gaussian15")
    return EXIT_OK


def command_models_info(args) -> int:
    import json

    from .model.registry import REGISTRY, install_hint, installed_path

    entry = REGISTRY.get(args.name)
    path = Path(args.name).expanduser()
    if not path.is_file():
        path = installed_path(args.name)
    if entry is not None:
        print(
            f"{entry.name}: {entry.description}\n  noise: {entry.noise}\n  channels: {entry.in_channels}"
            f"\n  source: {entry.source}\n  file: {entry.release_file}"
        )
    if path.is_file():
        from .errors import CheckpointError
        from .model.checkpoints import file_sha256, read_project_metadata

        print(f"  installed at: {path}\n  file sha256: {file_sha256(path)}")
        try:
            metadata = read_project_metadata(path)
        except CheckpointError as exc:
            print(f"  (no project metadata: {exc})")
        else:
            shown = {k: v for k, v in metadata.items() if k != "config"}
            print("  metadata: " + json.dumps(shown, indent=4, sort_keys=True, default=str).replace("\n", "\n  "))
        return EXIT_OK
    if entry is None:
        raise CommandError(install_hint(args.name))
    print("  not installed. " + install_hint(args.name))
    return EXIT_OK


def command_models_import(args) -> int:
    from .errors import CheckpointError
    from .model.registry import install_model

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total or None, unit="B", unit_scale=True, desc="download", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        target = install_model(args.source, args.name, sha256=args.sha256, overwrite=args.overwrite, progress=progress)
    except (CheckpointError, FileExistsError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    print(f"installed {args.name!r} at {target}")
    return EXIT_OK


def command_models_path(args) -> int:
    from .model.registry import cache_dir, install_hint, installed_path

    if args.name is None:
        print(cache_dir())
        return EXIT_OK
    if not installed_path(args.name).is_file():
        raise CommandError(install_hint(args.name))
    print(installed_path(args.name))
    return EXIT_OK


def command_models_remove(args) -> int:
    from .errors import ModelNotInstalledError
    from .model.registry import remove_model

    try:
        remove_model(args.name)
    except ModelNotInstalledError as exc:
        raise CommandError(str(exc)) from exc
    print(f"removed {args.name!r}")
    return EXIT_OK


# ---------------------------------------------------------------------------- info
def command_info(args) -> int:
    import platform
    from importlib import metadata

    from .model.registry import cache_dir, installed_models

    print(f"napari-clipdenoise {__version__}, Python {platform.python_version()} on {platform.platform()}")
    for package in ("numpy", "torch", "safetensors", "tifffile", "imageio", "zarr", "dask", "napari"):
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {package:<12} {version}")
    try:
        import torch

        from .inference.device import cpu_has_native_bf16, resolve_device
    except ImportError as exc:
        print(f"devices: torch cannot be imported ({exc})")
    else:
        print(
            f"devices: cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads,"
            f" native bf16: {'yes' if cpu_has_native_bf16() else 'no'})"
        )
        for index in range(torch.cuda.device_count()):
            print(f"  cuda:{index} {torch.cuda.get_device_name(index)}")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            print("  mps (Apple GPU)")
        print(f"  default device: {resolve_device('auto')}")
    models = installed_models()
    print(f"model cache: {cache_dir()} ({', '.join(models) if models else 'no model installed'})")
    return EXIT_OK


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clipdenoise`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _interrupt_on_sigterm()
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"clipdenoise: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
