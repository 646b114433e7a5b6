"""Turning command-line inputs (files, folders, glob patterns) into input -> output jobs.

No pixel data is read here: only names, folder listings and file types, so a
batch can be checked (formats, name collisions, writable folders) before any work.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from ..formats import format_of, looks_like_output, output_name
from ..formats.atomic import is_partial
from ..formats.base import UnsupportedFormatError
from ..formats.dispatch import is_image_folder

_GLOB_CHARS = set("*?[")


@dataclass
class Job:
    """One input and where its result goes; ``error`` is set when it cannot be processed at all."""

    input: Path
    output: Path | None = None
    error: str | None = None
    base: Path | None = None  # the folder argument this file was found in (to mirror subfolders under -o)


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or is_partial(path) or looks_like_output(path)


def _walk(folder: Path, recursive: bool, base: Path, jobs: list[Job]) -> None:
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        jobs.append(Job(folder, error=f"cannot list the folder: {exc.strerror or exc}"))
        return
    for entry in entries:
        if _ignored(entry):
            continue
        if entry.is_dir():
            if is_image_folder(entry):
                jobs.append(Job(entry, base=base))
            elif recursive:
                _walk(entry, recursive, base, jobs)
        elif entry.is_file():
            jobs.append(Job(entry, base=base))


def expand_inputs(arguments: list[str], *, recursive: bool = False, exclude: list[Path] = ()) -> list[Job]:
    """Files, folders (recursed with ``recursive``) and glob patterns -> one Job per input, in order.

    Folders contribute every visible file (unsupported ones are reported, not
    silently dropped) except earlier results (``*_denoised.*``), temporary
    files and the paths in ``exclude`` (e.g. the report file).
    """
    jobs: list[Job] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir() and not is_image_folder(path):
            _walk(path, recursive, path, jobs)
        elif path.exists():
            jobs.append(Job(path))
        elif _GLOB_CHARS & set(argument):
            matches = sorted(glob.glob(os.path.expanduser(argument), recursive=recursive))
            matches = [Path(m) for m in matches if not _ignored(Path(m))]
            matches = [m for m in matches if m.is_file() or is_image_folder(m)]
            if not matches:
                jobs.append(Job(path, error="no file matches this pattern"))
            jobs.extend(Job(m) for m in matches)
        else:
            jobs.append(Job(path, error="no such file or folder"))
    excluded = {p.resolve() for p in exclude}
    unique: list[Job] = []
    seen: set[Path] = set()
    for job in jobs:
        key = job.input.resolve()
        if key in seen or key in excluded:
            continue
        seen.add(key)
        unique.append(job)
    return unique


def plan_outputs(jobs: list[Job], outdir: Path | None) -> list[Job]:
    """Set each job's output path; mark unsupported types and name collisions as errors.

    An output never replaces an input of the batch, and two inputs never share an output.
    """
    inputs = {job.input.resolve(): job for job in jobs}
    claimed: dict[Path, Path] = {}
    for job in jobs:
        if job.error:
            continue
        try:
            format_of(job.input)
        except UnsupportedFormatError as exc:
            job.error = str(exc)
            continue
        if outdir is None:
            folder = job.input.parent
        elif job.base is not None:
            folder = outdir / job.input.parent.relative_to(job.base)
        else:
            folder = outdir
        job.output = folder / output_name(job.input)
        key = job.output.resolve()
        if key in inputs:
            job.error = (
                f"its output {job.output} is also an input of this batch and inputs are never overwritten;"
                " choose another output folder with -o"
            )
        elif key in claimed:
            job.error = (
                f"its output {job.output} would also be written for {claimed[key]}; use -o with separate"
                " folders or rename one of the inputs"
            )
        else:
            claimed[key] = job.input
    return jobs


def check_output_folders(jobs: list[Job], *, create: bool) -> list[str]:
    """Create (if ``create``) and test-write every output folder; return one problem per bad folder."""
    import tempfile

    problems = []
    for folder in sorted({job.output.parent for job in jobs if job.output is not None and not job.error}):
        try:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder, prefix=".clipdenoise-write-test-"):
                pass
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
    return problems
