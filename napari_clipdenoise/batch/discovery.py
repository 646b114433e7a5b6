"""Turning command-line inputs (files, folders, glob patterns) into input -> output jobs.

No pixel data is read here: only names, folder listings, file types and (for
paths that already exist where an output would go) whether they are earlier
results, so a batch can be checked (formats, name collisions, writable folders,
nothing replaced that this software did not write) before any work.

Traversal never follows a symbolic link to a folder (``-r`` and ``**`` alike), so
a link loop cannot be walked and no input is found, nor output written, outside
the folders given.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from ..formats import format_of, looks_like_output, output_name
from ..formats.atomic import is_partial
from ..formats.base import UnsupportedFormatError
from ..formats.dispatch import OUTPUT_SUFFIX, is_image_folder
from ..formats.provenance import sidecar_path
from ..formats.safety import check_not_input, is_clipdenoise_output, is_inside, is_provenance_sidecar

_GLOB_CHARS = set("*?[")
#: Output kinds whose provenance goes into a ``<output>.json`` sidecar.
_SIDECAR_KINDS = ("npy", "jpeg")


@dataclass
class Job:
    """One input and where its result goes.

    ``error`` is set when it cannot be processed at all; ``skip`` when it was found
    by scanning and is not an image (listed as skipped, not as a failure).
    ``decision`` is what to do with an existing output (see :mod:`.resume`).
    """

    input: Path
    output: Path | None = None
    error: str | None = None
    base: Path | None = None  # the folder argument this file was found in (to mirror subfolders under -o)
    skip: str | None = None
    found: bool = False  # found by scanning a folder or matching a pattern (not named explicitly)
    decision: object = None


def _ignored(path: Path, suffix: str = OUTPUT_SUFFIX) -> bool:
    return (
        path.name.startswith(".")
        or is_partial(path)
        or looks_like_output(path)
        or looks_like_output(path, suffix=suffix)
    )


def _walk(folder: Path, recursive: bool, base: Path, jobs: list[Job], notes: list[str], suffix: str, seen: set) -> None:
    try:
        stat = folder.stat()
        entries = sorted(folder.iterdir())
    except OSError as exc:
        jobs.append(Job(folder, error=f"cannot list the folder: {exc.strerror or exc}"))
        return
    if (stat.st_dev, stat.st_ino) in seen:  # a bind mount or similar loop
        notes.append(f"{folder}: already searched (the folder is reached twice); not searched again")
        return
    seen.add((stat.st_dev, stat.st_ino))
    not_searched = 0
    for entry in entries:
        if _ignored(entry, suffix):
            continue
        if entry.is_dir():
            if is_image_folder(entry):
                jobs.append(Job(entry, base=base, found=True))
            elif entry.is_symlink():
                if recursive:
                    notes.append(
                        f"{entry}: a symbolic link to a folder, not followed (give it as an input to include it)"
                    )
                else:
                    not_searched += 1
            elif recursive:
                _walk(entry, recursive, base, jobs, notes, suffix, seen)
            else:
                not_searched += 1
        elif entry.is_file():
            jobs.append(Job(entry, base=base, found=True))
    if not_searched:
        notes.append(f"{folder}: {not_searched} subfolder(s) not searched; pass -r/--recursive to include subfolders")


def _match(pattern: str, recursive: bool, notes: list[str]) -> list[Path]:
    """Paths matching ``pattern``; ``**`` spans folders only with ``recursive`` and never follows folder links.

    Matches reached through a symbolic link to a folder outside the pattern's
    fixed part (its root) are left out with a note, so no output lands outside it.
    """
    expanded = os.path.expanduser(pattern)
    parts = Path(expanded).parts
    first = next((i for i, part in enumerate(parts) if _GLOB_CHARS & set(part)), len(parts))
    root = Path(*parts[:first]) if first else Path(".")
    rest = Path(*parts[first:]).as_posix() if first < len(parts) else ""
    if "**" in expanded and not recursive:
        notes.append(f"{pattern}: '**' matches a single folder level without -r/--recursive; pass -r to search deeper")
        found = [Path(m) for m in sorted(glob.glob(expanded))]
    elif not rest:
        found = [root] if root.exists() else []
    else:
        found = sorted(root.glob(rest))  # pathlib's ** does not follow symbolic links to folders
    matches = []
    for match in found:
        try:
            relative = match.relative_to(root).parts
        except ValueError:
            relative = match.parts
        if any(part.startswith(".") for part in relative[:-1]):
            continue  # inside a hidden folder (temporary outputs, job state)
        if any(is_image_folder(root.joinpath(*relative[:i])) for i in range(1, len(relative))):
            continue  # a file inside a zarr store or a DICOM series
        if not is_inside(match.parent, root):
            notes.append(f"{match}: reached through a symbolic link to a folder outside {root}; not followed")
            continue
        matches.append(match)
    return matches


def expand_inputs(
    arguments: list[str],
    *,
    recursive: bool = False,
    exclude: list[Path] = (),
    suffix: str = OUTPUT_SUFFIX,
    notes: list[str] | None = None,
) -> list[Job]:
    """Files, folders (recursed with ``recursive``) and glob patterns -> one Job per input, in order.

    Folders contribute every visible file (those that are not images are listed
    as skipped, with the reason) except earlier results (``*_denoised.*`` or
    ``*<suffix>.*``), temporary files and the paths in ``exclude`` (e.g. the
    report). ``notes`` (a list) receives what was left out and why (subfolders
    without ``recursive``, folder links that are not followed).
    """
    notes = [] if notes is None else notes
    jobs: list[Job] = []
    seen_folders: set = set()
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir() and not is_image_folder(path):
            _walk(path, recursive, path, jobs, notes, suffix, seen_folders)
        elif path.exists():
            jobs.append(Job(path))
        elif _GLOB_CHARS & set(argument):
            matches = [m for m in _match(argument, recursive, notes) if not _ignored(m, suffix)]
            matches = [m for m in matches if m.is_file() or is_image_folder(m)]
            if not matches:
                jobs.append(Job(path, error="no file matches this pattern"))
            jobs.extend(Job(m, found=True) for m in matches)
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


def plan_outputs(
    jobs: list[Job], outdir: Path | None, *, suffix: str = OUTPUT_SUFFIX, kind: str | None = None
) -> list[Job]:
    """Set each job's output path; mark unsupported types and name collisions.

    A file found by scanning that is not an image is skipped (``job.skip``); one
    named explicitly is an error. An output never replaces an input of the batch,
    and two inputs never share an output. ``suffix`` and ``kind`` (an output
    format, e.g. ``"tiff"``) shape the output names.
    """
    inputs = {job.input.resolve(): job for job in jobs}
    claimed: dict[Path, Path] = {}
    for job in jobs:
        if job.error:
            continue
        try:
            format_of(job.input)
        except UnsupportedFormatError as exc:
            if job.found and not job.input.is_dir():
                job.skip = f"not an image ({exc})"
            else:
                job.error = str(exc)
            continue
        if outdir is None:
            folder = job.input.parent
        elif job.base is not None:
            folder = outdir / job.input.parent.relative_to(job.base)
        else:
            folder = outdir
        job.output = folder / output_name(job.input, suffix=suffix, kind=kind)
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


def output_root(job: Job, outdir: Path | None) -> Path:
    """The folder a job's output must stay inside: ``-o``, else the folder argument or the input's own folder."""
    if outdir is not None:
        return outdir
    return job.base if job.base is not None else job.input.parent


def check_outputs(jobs: list[Job], outdir: Path | None, *, kind: str | None = None) -> list[str]:
    """Problems that make the batch a usage error: an output path that would replace what it must not.

    For every planned output (symbolic links resolved): it is not inside, onto or
    around an input store; it stays inside the output root; nothing exists there
    that this software did not write (nor a folder where a file goes, nor the
    reverse, nor a link); the same for its ``.json`` sidecar.
    """
    stores = [job.input for job in jobs if job.input.is_dir()]
    problems = []
    for job in jobs:
        if job.output is None or job.error or job.skip:
            continue
        output = job.output
        problem = _output_problem(job, output, stores, outdir, kind)
        if problem:
            problems.append(f"{output}: {problem}")
    return problems


def _output_problem(job: Job, output: Path, stores, outdir, kind) -> str | None:
    try:
        check_not_input(output, [s for s in stores if s != job.input] + [job.input])
    except ValueError as exc:
        return str(exc)
    root = output_root(job, outdir)
    nearest = output.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if root.exists() and not is_inside(nearest, root):
        return f"its folder leads outside {root} (a symbolic link); outputs stay inside it"
    if os.path.islink(output):
        return "is a symbolic link; outputs never replace links: remove it or choose another -o/--suffix"
    if output.exists():
        written = kind or format_of(job.input)
        wants_folder = written == "zarr" or (written == "dicom" and job.input.is_dir())  # zarr store, DICOM series
        if output.is_dir() != wants_folder:
            what = "a folder" if output.is_dir() else "a file"
            return f"is {what}, where the result would be {'a folder' if wants_folder else 'a file'}; never replaced"
        if not is_clipdenoise_output(output):
            return (
                "exists and was not written by napari-clipdenoise, so it is never replaced (not even with"
                " --overwrite): move it away, or choose another -o or --suffix"
            )
    sidecar = sidecar_path(output)
    if (kind or format_of(job.input)) in _SIDECAR_KINDS and os.path.lexists(sidecar):
        if os.path.islink(sidecar) or not is_provenance_sidecar(sidecar):
            return (
                f"its provenance file {sidecar.name} exists and was not written by napari-clipdenoise; never replaced"
            )
    return None


def check_side_file(path: Path, role: str, jobs: list[Job], is_ours) -> str | None:
    """Why ``path`` cannot be the ``role`` file (``--report``, ``--log``) of this batch, or None.

    It must be a file name in an existing folder, not an input or output of the
    batch (links resolved), and if it exists it must be one this software wrote
    (``is_ours(path)``).
    """
    resolved = path.expanduser().resolve()
    if resolved.is_dir():
        return f"{role} {path} is a folder; give a file name, e.g. {path / 'report.json'}"
    output_folders = {job.output.parent.resolve() for job in jobs if job.output is not None and not job.error}
    if not resolved.parent.is_dir():
        if resolved.parent not in output_folders:  # an output folder this run creates is fine
            return f"{role} {path}: the folder {resolved.parent} does not exist; create it first"
    elif not os.access(resolved.parent, os.W_OK):
        return f"{role} {path}: the folder {resolved.parent} is not writable"
    for job in jobs:
        if job.input.resolve() == resolved or (job.input.is_dir() and resolved.is_relative_to(job.input.resolve())):
            return f"{role} {path} is an input of this batch; it is never replaced"
        if job.output is not None and (resolved in (job.output.resolve(), sidecar_path(job.output).resolve())):
            return f"{role} {path} is where the result of {job.input} goes"
    if resolved.exists() and not is_ours(resolved):
        return (
            f"{role} {path} exists and is not a {role.lstrip('-')} file written by clipdenoise; it is never replaced:"
            " choose another name or move it away"
        )
    return None


def check_output_folders(jobs: list[Job], *, create: bool) -> list[str]:
    """Create (if ``create``) and test-write every output folder; return one problem per bad folder."""
    import tempfile

    problems = []
    for folder in sorted({job.output.parent for job in jobs if job.output is not None and not job.error}):
        try:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            elif not folder.exists():  # a dry run creates nothing: test the nearest folder that exists
                folder = next(p for p in folder.parents if p.exists())
                if not os.access(folder, os.W_OK):
                    raise PermissionError(13, "Permission denied")
                continue
            with tempfile.TemporaryFile(dir=folder, prefix=".clipdenoise-write-test-"):
                pass
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
    return problems
