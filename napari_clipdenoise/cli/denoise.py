"""``clipdenoise denoise``: files, folders or patterns in, ``<stem>_denoised.<ext>`` out, with provenance."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..inference.options import DEFAULT_TILE_SIZE, DEVICES, PLANES, PRECISIONS, UNITS
from ..inference.runners import family_of, tiling_text
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    cli_syntax,
    intensity_range_argument,
    option_error,
    positive,
)

DEFAULT_MODEL = "gaussian15"
#: --output-format names -> format kinds (formats.dispatch).
OUTPUT_FORMATS = {"same": None, "tif": "tiff", "tiff": "tiff", "png": "png", "npy": "npy", "zarr": "zarr"}
_SIZE_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


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


def _channels(text: str):
    try:
        chosen = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        chosen = ()
    if not chosen or min(chosen) < 0:
        raise argparse.ArgumentTypeError(
            f"must be channel numbers from 0, separated by commas (e.g. 0,2), got {text!r}"
        )
    return chosen


def _pixel_count(text: str):
    value = text.strip().lower()
    if value in ("none", "unlimited"):
        return float("inf")
    factor = _SIZE_SUFFIXES.get(value[-1:], 1)
    try:
        number = float(value[:-1] if factor > 1 else value) * factor
    except ValueError:
        number = -1
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a number of pixels such as 20G or 2e10 (or 'none'), got {text!r}")
    return int(number)


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
        type=intensity_range_argument,
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
    run.add_argument(
        "--output-format",
        choices=sorted(OUTPUT_FORMATS),
        default="same",
        help="write results as TIFF, PNG, NPY or zarr instead of the input's format (default: %(default)s)",
    )
    run.add_argument(
        "--suffix",
        default="_denoised",
        help="added to each input's name for its result: <stem><suffix>.<ext> (default: %(default)s)",
    )
    run.add_argument(
        "--channels",
        type=_channels,
        metavar="N[,N...]",
        help="channels to denoise, numbered from 0 (e.g. 0,2); the others are copied unchanged (default: all)",
    )
    run.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 flips/rotations (8x the time)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="redo outputs that exist (default: keep those finished from the same input, model and settings)",
    )
    run.add_argument("-r", "--recursive", action="store_true", help="also process subfolders (and ** in patterns)")
    run.add_argument(
        "--dry-run", action="store_true", help="say what would be denoised, skipped or refused; write nothing"
    )
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file messages")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="also each file's plan and intensity ranges")
    run.add_argument("--log", type=Path, metavar="FILE", help="append every message, with times, to this text file")
    run.add_argument("--report", type=Path, metavar="FILE.json", help="write one record per input to this JSON file")
    run.add_argument(
        "--max-pixels",
        type=_pixel_count,
        default=None,
        metavar="N",
        help="the most pixels one input may declare, e.g. 20G or 2e10, or 'none' (default: 2^34, about 17G)",
    )
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
            tta=args.tta,
            channels=args.channels,
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


def _limit(value, default):
    if value is None:
        return default
    return None if value == float("inf") else value


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a ``--report`` file written by this command (so it may be replaced)."""
    import json

    try:
        if path.stat().st_size > 256 * 1024 * 1024:
            return False
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and {"summary", "settings", "files"} <= set(document)


def _check_arguments(args) -> None:
    """Usage errors found from the arguments alone."""
    suffix = args.suffix
    if "/" in suffix or "\\" in suffix or suffix in (".", ".."):
        raise CommandError(f"--suffix {suffix!r} must be part of a file name (no folder separators)")
    if not suffix and args.output_dir is None:
        raise CommandError("--suffix '' writes each result under its input's own name: give -o OUTDIR with it")
    if args.scheduler:
        if args.tta:
            raise CommandError(
                "--tta is not available with --scheduler (the dask block engine denoises blocks, not whole planes);"
                " drop one of them"
            )
        from ..batch.scale_out import check_engine, check_scheduler

        try:
            check_engine()
            check_scheduler(args.scheduler)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(f"--scheduler {exc}" if isinstance(exc, ValueError) else str(exc)) from exc
    if args.report and args.log and args.report.expanduser().resolve() == args.log.expanduser().resolve():
        raise CommandError("--report and --log must be two different files")


def _plan(args, kind):
    """Inputs -> jobs with outputs; every usage problem of the batch (outputs, report, log) raised here."""
    from ..batch.discovery import check_outputs, check_side_file, expand_inputs, plan_outputs
    from ..batch.progress import is_log_file

    notes: list[str] = []
    exclude = [p for p in (args.report, args.log) if p]
    jobs = plan_outputs(
        expand_inputs(args.inputs, recursive=args.recursive, exclude=exclude, suffix=args.suffix, notes=notes),
        args.output_dir,
        suffix=args.suffix,
        kind=kind,
    )
    if not jobs:
        raise CommandError("no input files found")
    problems = check_outputs(jobs, args.output_dir, kind=kind)
    for path, role, is_ours in ((args.report, "--report", _is_report), (args.log, "--log", is_log_file)):
        if path is not None:
            problem = check_side_file(path, role, jobs, is_ours)
            if problem:
                problems.append(problem)
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise CommandError("nothing was done:\n    " + "\n    ".join(shown))
    return jobs, notes


def _decide(jobs, settings, model_spec: str) -> None:
    """What to do with each output that exists already (keep, redo, refuse), before any model is loaded."""
    from ..batch.resume import Decision, decide, model_file_sha256

    model_sha = model_file_sha256(model_spec)
    for job in jobs:
        if job.output is None or job.error or job.skip:
            continue
        if settings.scheduler and job.input.is_dir():
            job.decision = Decision("delegate")
        else:
            job.decision = decide(job.output, job.input, settings, model_sha)


def _dry_run(jobs, notes) -> int:
    counts = {"denoise": 0, "skip": 0, "refuse": 0}
    lines = ["dry run: nothing is read beyond names and headers, nothing is written"]
    lines += [f"  note: {note}" for note in notes]
    for job in jobs:
        if job.error:
            counts["refuse"] += 1
            lines.append(f"  would fail     {job.input}: {job.error}")
        elif job.skip:
            counts["skip"] += 1
            lines.append(f"  would skip     {job.input}: {job.skip}")
        elif job.decision.action == "skip":
            counts["skip"] += 1
            lines.append(f"  would skip     {job.input}: {job.decision.reason}")
        elif job.decision.action == "refuse":
            counts["refuse"] += 1
            lines.append(f"  would refuse   {job.input}: {job.decision.reason}")
        else:
            counts["denoise"] += 1
            why = f" ({job.decision.reason})" if job.decision.reason else ""
            verb = "redo" if job.decision.action == "redo" else "denoise"
            lines.append(f"  would {verb:<8} {job.input} -> {job.output}{why}")
    lines.append(f"{counts['denoise']} to denoise, {counts['skip']} to skip, {counts['refuse']} refused or failing")
    print(cli_syntax("\n".join(lines)))
    return EXIT_FAILED if counts["refuse"] else EXIT_OK


def command_denoise(args) -> int:
    from ..batch.discovery import check_output_folders
    from ..batch.progress import BatchProgress
    from ..batch.report import FileRecord, summary, summary_line, write_report
    from ..batch.runner import BatchSettings, process_job
    from ..formats.base import DEFAULT_MAX_PIXELS

    check_model_source(args.model)
    options = inference_options(args)
    _check_arguments(args)
    kind = OUTPUT_FORMATS[args.output_format]
    jobs, notes = _plan(args, kind)
    problems = check_output_folders(jobs, create=args.output_dir is not None and not args.dry_run)
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
        output_kind=kind,
        max_pixels=_limit(args.max_pixels, DEFAULT_MAX_PIXELS),
    )
    _decide(jobs, settings, args.model)
    if args.dry_run:
        return _dry_run(jobs, notes)
    pending = [j for j in jobs if j.decision is not None and j.decision.action in ("run", "redo", "delegate")]
    model, model_info = None, {"name": args.model}
    if pending:  # otherwise everything is done or failed already: no need to import torch and load the model
        # zarr inputs given to a scheduler are resolved by each worker for its own hardware
        in_process = any(j.decision.action != "delegate" for j in pending)
        model, settings, model_info = _load_model(args, settings, resolve=in_process)
    progress = BatchProgress(len(jobs), quiet=args.quiet, verbose=args.verbose, log=args.log)
    for note in notes:
        progress.message(note)
    if model is not None:
        where = settings.resolved.describe() if settings.resolved is not None else f"scheduler {settings.scheduler}"
        if settings.resolved is not None and (family_tiling := tiling_text(family_of(model), settings.options)):
            where = f"{settings.resolved.device}, {settings.resolved.precision}, {family_tiling}"
        progress.message(f"model {model_info['name']} ({model_info.get('sha256') or 'no sha256'}) on {where}")
    records: list = []
    started = time.perf_counter()
    interrupted = None
    try:
        for job in jobs:
            progress.start_file(job.input.name)
            record = process_job(job, model, settings, model_info, progress)
            if record.error:
                record.error = cli_syntax(record.error)
            records.append(record)
            progress.end_file(record.status, record.seconds)
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
    report_failed = False
    if args.report:
        try:
            write_report(args.report, records, info, settings.record())
        except OSError as exc:
            from ..formats.disk import write_error_message

            report_failed = True
            print(
                f"clipdenoise: error: the report was not written: {write_error_message(exc, args.report)}",
                file=sys.stderr,
            )
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
    return EXIT_FAILED if failed or report_failed else EXIT_OK


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
    resolved = None
    if resolve:  # before the model is read: a device that is not there fails at once
        from ..model.facts import model_facts

        facts = model_facts(args.model)
        try:
            resolved = resolve_options(settings.options, family=facts.family if facts is not None else "clip")
        except OptionError as exc:
            raise option_error(exc) from None
    try:
        model = load_model(args.model)
    except (CheckpointError, ModelNotInstalledError) as exc:
        raise CommandError(cli_syntax(str(exc))) from exc
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
