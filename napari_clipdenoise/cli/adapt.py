"""``clipdenoise adapt``: fine-tune a model on your own noisy images (no clean targets) and install it by name."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..inference.options import DEVICES
from .common import EXIT_INTERRUPTED, EXIT_OK, CommandError, intensity_range_argument, positive

DEFAULT_MODEL = "gaussian15"
DEFAULT_MINUTES = 5.0
#: The paper's feature-augmentation level (Gaussian recipes), used by a bare --feature-aug.
PAPER_AUG_LEVEL = 0.025
#: Settings and options as this command spells them (for OptionError messages).
FLAGS = {
    "steps": "--steps",
    "max_minutes": "--minutes",
    "crop_size": "--crop-size",
    "batch_size": "--batch-size",
    "mask_fraction": "--mask-fraction",
    "neighbourhood": "--neighbourhood",
    "structured_axis": "--structured-mask",
    "structured_length": "--structured-length",
    "decoder_stages": "--stages",
    "lr": "--lr",
    "feature_aug_level": "--feature-aug",
    "validation_fraction": "--validation-fraction",
    "validate_every": "--validate-every",
    "patience": "--patience",
    "seed": "--seed",
    "precision": "--precision",
    "threads": "--threads",
    "device": "--device",
    "intensity_range": "--intensity-range",
}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_parser(commands) -> None:
    run = commands.add_parser(
        "adapt",
        help="fine-tune a model on your own noisy images (self-supervised) and install it",
        description="Adapt a CLIP denoiser to the noise of your own microscope or scanner from noisy images alone"
        " (masked-pixel self-supervision, Noise2Void family), then install it under --name for"
        " `clipdenoise denoise -m NAME`, the napari widgets and napari_clipdenoise.denoise. Inputs are read as"
        " `clipdenoise denoise` reads them (files, folders, patterns; axes from metadata or --axes). See docs/adapt.md.",
    )
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="noisy files, folders or glob patterns (quote them)")
    run.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help="base model: installed name or checkpoint (default: %(default)s)"
    )
    run.add_argument("--name", help="install the adapted model under this name (e.g. my_scope)")
    run.add_argument("-o", "--output", type=Path, help="also write the checkpoint to this .safetensors file")
    budget = run.add_mutually_exclusive_group()
    budget.add_argument(
        "--minutes", type=_positive_float, help=f"training time budget (default: {DEFAULT_MINUTES:g} minutes)"
    )
    budget.add_argument("--steps", type=positive, help="number of training steps instead of a time budget")
    run.add_argument(
        "--axes", help="axes of every input, e.g. YX, ZYX, YXS, CZYX (default: from metadata, else guessed)"
    )
    run.add_argument("-r", "--recursive", action="store_true", help="also read subfolders (and ** in patterns)")
    run.add_argument(
        "--stages", type=positive, default=2, help="decoder blocks trained, from the output (1-5, default: 2)"
    )
    run.add_argument("--crop-size", type=positive, default=64, help="training crop edge in px (default: 64)")
    run.add_argument("--batch-size", type=positive, default=8, help="crops per step (default: 8)")
    run.add_argument(
        "--mask-fraction", type=float, default=0.02, help="fraction of pixels hidden per crop (default: 0.02)"
    )
    run.add_argument("--neighbourhood", type=positive, default=5, help="window for replacement pixels (default: 5)")
    run.add_argument(
        "--structured-mask",
        choices=("X", "Y", "x", "y"),
        help="noise correlated along rows (X) or columns (Y): also hide a line of pixels along that axis",
    )
    run.add_argument("--structured-length", type=positive, default=5, help="length of that line, odd (default: 5)")
    run.add_argument(
        "--feature-aug",
        dest="feature_aug",
        action="store_const",
        const=PAPER_AUG_LEVEL,
        default=0.0,
        help=f"switch on the paper's feature augmentation (level {PAPER_AUG_LEVEL}; default: off)",
    )
    run.add_argument("--feature-aug-level", dest="feature_aug", type=float, metavar="LEVEL", help="... at this level")
    run.add_argument("--lr", type=float, default=2e-4, help="learning rate (default: 2e-4)")
    run.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="fraction of crops held out for early stopping (default: 0.1; 0: none)",
    )
    run.add_argument("--validate-every", type=positive, default=25, help="steps between evaluations (default: 25)")
    run.add_argument(
        "--patience", type=int, default=8, help="evaluations without improvement before stopping (0: never)"
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    run.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="(default: %(default)s)")
    run.add_argument("--threads", type=positive, help="CPU threads for torch (default: torch's choice)")
    run.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)} or cuda:N (default: %(default)s)")
    run.add_argument(
        "--intensity-range",
        type=intensity_range_argument,
        default="auto",
        metavar="auto|percentile|dtype|LOW,HIGH",
        help="how values map to the network's [0, 1], as for denoise (default: auto)",
    )
    run.add_argument(
        "--state",
        type=Path,
        help="resumable state file (default: adapt-states/NAME.pt in the model cache, or next to --output)",
    )
    run.add_argument("--resume", action="store_true", help="continue the run saved in the state file")
    run.add_argument("--overwrite", action="store_true", help="replace an installed model or output of that name")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=command_adapt)


def _settings(args):
    from ..adaptation.settings import AdaptSettings
    from ..inference.options import InferenceOptions, OptionError

    minutes = args.minutes if args.minutes is not None else (None if args.steps else DEFAULT_MINUTES)
    try:
        settings = AdaptSettings(
            steps=args.steps,
            max_minutes=minutes,
            crop_size=args.crop_size,
            batch_size=args.batch_size,
            mask_fraction=args.mask_fraction,
            neighbourhood=args.neighbourhood,
            structured_axis=args.structured_mask.upper() if args.structured_mask else None,
            structured_length=args.structured_length,
            decoder_stages=args.stages,
            lr=args.lr,
            feature_aug_level=args.feature_aug,
            validation_fraction=args.validation_fraction,
            validate_every=args.validate_every,
            patience=args.patience,
            seed=args.seed,
            precision=args.precision,
            threads=args.threads,
        )
        options = InferenceOptions(device=args.device, intensity_range=args.intensity_range)
    except OptionError as exc:
        raise CommandError(exc.render(FLAGS)) from None
    return settings, options


def _state_path(args) -> Path:
    if args.state is not None:
        return args.state.expanduser()
    if args.name:
        from ..model.registry import cache_dir

        return cache_dir() / "adapt-states" / f"{args.name}.pt"
    return args.output.with_name(args.output.stem + ".adapt-state.pt")


def open_inputs(arguments: list[str], *, recursive: bool, axes: str | None):
    """Open every input lazily, as ``clipdenoise denoise`` finds and reads them; any problem is a usage error."""
    from ..batch.discovery import expand_inputs
    from ..formats import format_of, open_source
    from ..formats.base import UnreadableImageError, UnsupportedFormatError

    jobs = expand_inputs(arguments, recursive=recursive)
    problems = [f"{job.input}: {job.error}" for job in jobs if job.error]
    for job in jobs:
        if not job.error:
            try:
                format_of(job.input)
            except UnsupportedFormatError as exc:
                problems.append(f"{job.input}: {exc}")
    if problems:
        raise CommandError("cannot train on these inputs:\n    " + "\n    ".join(problems))
    if not jobs:
        raise CommandError("no input files found")
    sources = []
    try:
        for job in jobs:
            try:
                sources.append(open_source(job.input))
            except (UnreadableImageError, UnsupportedFormatError, OSError) as exc:
                raise CommandError(f"{job.input}: {exc}") from exc
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources, [axes or source.axes for source in sources]


class _Bar:
    """A tqdm bar over steps (``--steps``) or seconds (``--minutes``), with the latest losses."""

    def __init__(self, settings, quiet: bool):
        from tqdm.auto import tqdm

        self.by_steps = settings.steps is not None
        total = settings.steps if self.by_steps else int(round(settings.max_seconds))
        self.bar = tqdm(
            total=total,
            unit="step" if self.by_steps else "s",
            desc="adapting",
            disable=quiet,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def __call__(self, report) -> None:
        done = report.step if self.by_steps else min(self.bar.total, int(report.elapsed_s))
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        postfix = {"step": report.step} if not self.by_steps else {}
        if report.loss is not None:
            postfix["loss"] = f"{report.loss:.3g}"
        if report.best_val_loss is not None:
            postfix["held-out"] = f"{report.best_val_loss:.3g}"
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()


def command_adapt(args) -> int:
    from ..adaptation.loop import AdaptError, adapt
    from ..errors import AdaptCancelled, CheckpointError, ModelNotInstalledError
    from .denoise import check_model_source

    if not args.name and args.output is None:
        raise CommandError("give --name NAME to install the adapted model (and/or -o FILE.safetensors)")
    if args.name:
        from ..model.sources import validate_model_name

        try:
            validate_model_name(args.name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    check_model_source(args.model)
    settings, options = _settings(args)
    state = _state_path(args)
    if args.resume and not state.is_file():
        raise CommandError(f"--resume: no saved run at {state}; run without --resume to start one")
    sources, axes = open_inputs(args.inputs, recursive=args.recursive, axes=args.axes.upper() if args.axes else None)
    bar = None
    try:
        if not args.quiet:
            for source, source_axes in zip(sources, axes, strict=True):
                print(
                    f"{source.path}: shape {source.shape} {source.dtype}, axes {source_axes or 'guessed'}",
                    file=sys.stderr,
                )
        bar = _Bar(settings, args.quiet)
        model = adapt(
            [source.data for source in sources],
            args.model,
            axes=axes,
            options=options,
            settings=settings,
            name=args.name,
            output=args.output,
            overwrite=args.overwrite,
            state=state,
            resume=args.resume,
            progress=bar,
        )
    except (AdaptCancelled, KeyboardInterrupt) as exc:
        if bar is not None:
            bar.close()
        where = f" --state {state}" if args.state is not None else ""
        print(
            f"interrupted: nothing was installed; the run is saved in {state}. Continue it with the same command"
            f" plus --resume{where}",
            file=sys.stderr,
        )
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    except (AdaptError, CheckpointError, ModelNotInstalledError, FileExistsError, ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
        for source in sources:
            source.close()
    _summary(model, args)
    return EXIT_OK


def _summary(model, args) -> None:
    record = model.metadata["adaptation"]
    base, best = record.get("base_val_loss"), record.get("best_val_loss")
    held_out = ""
    if base is not None and best is not None:
        held_out = f"; held-out masked loss {base:.4g} (base model) -> {best:.4g} (step {record['best_step']})"
    print(
        f"adapted {model.metadata['adapted_from']['name']} in {record['steps']} steps, {record['elapsed_s'] / 60:.1f} min"
        f" ({record['stop_reason']}){held_out}"
    )
    if record["best_step"] == 0 and record["steps"]:
        print("note: no step improved the held-out loss; the result keeps the base model's weights")
    if args.output is not None:
        print(f"wrote {args.output}")
    if args.name:
        print(f"installed {args.name!r}; denoise with: clipdenoise denoise INPUT -m {args.name}")
