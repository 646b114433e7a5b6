"""``clipdenoise denoise``: files, folders or patterns in, ``<stem>_denoised.<ext>`` out, with provenance."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..inference.options import DEFAULT_TILE_SIZE, DEVICES, PLANES, PRECISIONS, UNITS
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CommandError, option_error, positive

DEFAULT_MODEL = "gaussian15"


def _tile_size(text: str):
    if text.lower() in ("none", "0", "whole"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of pixels (a multiple of 16) or 'none', got {text!r}"
        ) from None


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels, got {text!r}") from None


def _intensity_range(text: str):
    if text in ("auto", "percentile", "dtype"):
        return text
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be auto, percentile, dtype or LOW,HIGH (e.g. -1024,3072), got {text}"
        ) from None
    return (low, high)


def add_parser(commands) -> None:
    run = commands.add_parser(
        "denoise",
        help="denoise files, folders or glob patterns",
        description="Denoise images into <stem>_denoised.<ext> files (same format, shape and dtype), with provenance."
        " Formats: TIFF (incl. ImageJ, OME), PNG, JPEG, NPY, zarr arrays, DICOM series and NIfTI (the ct extra).",
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
        help="largest tile edge in px, multiple of 16 (tiles shrink to fit each axis evenly), or 'none'"
        " (default: %(default)s)",
    )
    run.add_argument(
        "--overlap",
        type=_whole_number,
        default=None,
        help="overlap between tiles in px (default: 256, or tile size - 16 for tiles below 272 px)",
    )
    run.add_argument(
        "--device", default="auto", help=f"{', '.join(DEVICES)}, cuda:N or gpu (= cuda) (default: %(default)s)"
    )
    run.add_argument("--precision", default="auto", choices=PRECISIONS, help="(default: %(default)s)")
    run.add_argument("--batch-size", type=positive, help="tiles per forward pass (default: 1 on CPU, more on GPUs)")
    run.add_argument(
        "--threads",
        type=positive,
        help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)",
    )
    run.add_argument(
        "--intensity-range",
        type=_intensity_range,
        default="auto",
        metavar="auto|percentile|dtype|LOW,HIGH",
        help="how values map to the network's [0, 1] (default: auto: the model's own scale for data in its unit, e.g."
        " HU with ldct (see --units), else uint8 0..255, float 0..1 or the 0.1-99.9 percentiles)",
    )
    run.add_argument(
        "--units",
        type=str.upper,
        choices=UNITS,
        default=None,
        help="the unit the values are in (default: what the file says: DICOM CT and CT NIfTI are HU); with"
        " --intensity-range auto a model trained in that unit uses its own scale (ldct: -1024..3072 HU)",
    )
    run.add_argument(
        "--planes",
        choices=PLANES,
        default="xy",
        help="xy: volumes plane by plane; ortho: XY, XZ and YZ planes denoised and averaged (3x the work, less"
        " slice-to-slice flicker; needs a Z axis) (default: %(default)s)",
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


def inference_options(args):
    """The run's :class:`~napari_clipdenoise.inference.options.InferenceOptions`; bad values are usage errors."""
    from ..inference.options import InferenceOptions, OptionError

    try:
        return InferenceOptions(
            tile_size=args.tile_size,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            intensity_range=args.intensity_range,
            output_dtype=args.output_dtype,
            units=args.units,
            planes=args.planes,
        )
    except OptionError as exc:
        raise option_error(exc) from None


def check_model_source(spec: str) -> None:
    """Fail fast (no torch import) when ``spec`` names nothing that loads without a download."""
    from ..model.registry import install_hint
    from ..model.sources import parse_model_source

    source = parse_model_source(spec)
    if source.loadable:
        return
    if source.kind == "file":
        raise CommandError(f"checkpoint file not found: {source.path}")
    if source.kind == "url":
        raise CommandError(
            f"-m takes an installed model or a checkpoint file, not a URL: install it once with"
            f" clipdenoise models import {spec} --name NAME, then use -m NAME"
        )
    raise CommandError(install_hint(spec))


def command_denoise(args) -> int:
    from ..batch.discovery import check_output_folders, expand_inputs, plan_outputs
    from ..batch.progress import BatchProgress
    from ..batch.report import FileRecord, summary, summary_line, write_report
    from ..batch.runner import BatchSettings, process_job
    from ..formats.arrays import is_zarr_dir

    check_model_source(args.model)
    options = inference_options(args)
    if args.scheduler:
        from ..batch.scale_out import check_engine

        try:
            check_engine()
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

    settings = BatchSettings(
        options,
        model_spec=args.model,
        axes=args.axes.upper() if args.axes else None,
        overwrite=args.overwrite,
        scheduler=args.scheduler,
    )
    pending = [j for j in jobs if not j.error and (args.overwrite or args.scheduler or not j.output.exists())]
    model, model_info = None, {"name": args.model}
    if pending:  # otherwise everything is done or failed already: no need to import torch and load the model
        # zarr inputs given to a scheduler are resolved by each worker for its own hardware
        in_process = any(not (args.scheduler and is_zarr_dir(job.input)) for job in pending)
        model, settings, model_info = _load_model(args, settings, resolve=in_process)
    progress = BatchProgress(len(jobs), quiet=args.quiet)
    if model is not None:
        where = settings.resolved.describe() if settings.resolved is not None else f"scheduler {settings.scheduler}"
        progress.message(f"model {model_info['name']} ({model_info.get('sha256') or 'no sha256'}) on {where}")
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
        write_report(args.report, records, info, settings.record())
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


def _load_model(args, settings, *, resolve: bool):
    """Load the model and resolve the options for this machine (in-process runs)."""
    from dataclasses import replace

    from ..errors import CheckpointError, ModelNotInstalledError
    from ..inference.device import resolve_options
    from ..inference.options import OptionError
    from ..model.checkpoints import file_sha256
    from ..model.registry import load_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
    except (CheckpointError, ModelNotInstalledError) as exc:
        raise CommandError(str(exc)) from exc
    resolved = None
    if resolve:
        try:
            resolved = resolve_options(settings.options, family=model.family)
        except OptionError as exc:
            raise option_error(exc) from None
    model_path = Path(args.model).expanduser()
    model_spec = str(model_path.resolve()) if model_path.is_file() else args.model
    settings = replace(settings, model_spec=model_spec, resolved=resolved)
    model_info = dict(model.provenance())
    model_info["sha256"] = model.sha256
    if model.path is not None:
        model_info["file"] = str(model.path)
        model_info["file_sha256"] = file_sha256(model.path)
    if model.metadata.get("random_weights"):
        model_info["random_weights"] = True
    return model, settings, model_info
