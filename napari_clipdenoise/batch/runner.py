"""Denoise one planned job: open lazily, plan, write atomically with provenance, report.

Failures of one file (unreadable, wrong axes, a format that cannot hold the
output dtype...) become a ``failed`` record with the reason; the caller goes on
with the next file. ``KeyboardInterrupt`` propagates after the temporary output
has been removed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..formats import check_output_dtype, open_sink, open_source
from ..formats.arrays import is_zarr_dir
from ..formats.atomic import atomic_output, remove_stale_partials
from ..formats.base import (
    DEFAULT_MAX_PIXELS,
    UnreadableImageError,
    UnsupportedFormatError,
    available_memory,
    readable_size,
)
from ..formats.disk import is_write_error, write_error_message
from ..formats.provenance import build_provenance, write_sidecar
from ..inference.options import InferenceOptions, ResolvedOptions
from ..inference.runners import tiling_text
from .discovery import Job
from .report import FileRecord
from .resume import Decision, decide, input_identity, settings_identity

#: What tifffile and the core call axes the user may not have chosen, explained in the per-file line.
AXIS_MEANINGS = {
    "Q": "an unnamed axis",
    "I": "a sequence of pages",
    "S": "colour samples",
    "C": "channels",
    "T": "time",
    "Z": "depth",
    "R": "tiles",
    "P": "phases",
    "E": "lambda",
    "H": "lifetime histogram",
    "A": "angles",
    "L": "exposures",
    "V": "views",
    "M": "mosaic positions",
}


@dataclass
class BatchSettings:
    """What every file of a batch shares: the inference options and how outputs are handled."""

    options: InferenceOptions
    model_spec: str
    axes: str | None = None
    overwrite: bool = False
    scheduler: str | None = None
    resolved: ResolvedOptions | None = None  # device, precision, batch size on this machine (in-process runs)
    output_kind: str | None = None  # write results in this format (None: the input's)
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # the most pixels one input may declare

    def record(self) -> dict:
        """The settings for the batch report."""
        record = {"model": self.model_spec, "axes": self.axes, "overwrite": self.overwrite, "scheduler": self.scheduler}
        record["output_format"] = self.output_kind or "same"
        record["max_pixels"] = self.max_pixels
        record["options"] = self.options.as_record()
        if self.resolved is not None:
            record["resolved"] = _resolved_record(self.resolved)
        return record

    def provenance_parameters(self, plan) -> dict:
        """What one output's provenance says about how it was made."""
        # the plan's options: the batch's, with the unit the file declares (DICOM CT, NIfTI in HU) filled in
        parameters = {"axes": plan.layout.axes, **plan.options.as_record(), "scheduler": self.scheduler}
        parameters["overlap"] = plan.options.effective_overlap
        parameters["output_dtype"] = str(plan.output_dtype)
        parameters["tile_plan"] = [plan.tiles.tile_height, plan.tiles.tile_width]
        parameters["intensity_ranges"] = plan.intensity_ranges()
        if self.resolved is not None:
            parameters.update(_resolved_record(self.resolved))
        parameters["settings"] = settings_identity(self)  # what a rerun compares before skipping this output
        return parameters


def _resolved_record(resolved: ResolvedOptions) -> dict:
    return {"device": str(resolved.device), "precision": resolved.precision, "batch_size": resolved.batch_size}


def _megapixels(shape, layout) -> float:
    channel = layout.channel
    return math.prod(s for i, s in enumerate(shape) if i != channel) / 1e6


def process_job(job: Job, model, settings: BatchSettings, model_info: dict, progress) -> FileRecord:
    """Denoise ``job.input`` into ``job.output``; never raises for per-file problems."""
    record = FileRecord(str(job.input), "failed", str(job.output) if job.output else None)
    if job.error:
        record.error = job.error
        return record
    if job.skip:
        record.status, record.output = "skipped", None
        record.notes.append(job.skip)
        return record
    output: Path = job.output
    delegated = settings.scheduler is not None and is_zarr_dir(job.input)  # a DICOM folder runs here
    started = time.perf_counter()
    if delegated:
        remove_stale_partials(output)
        return _delegate(job, settings, progress, record, started)
    decision = job.decision
    if not isinstance(decision, Decision):
        decision = decide(output, job.input, settings, model_info.get("file_sha256"))
    if decision.action == "skip":
        record.status = "skipped"
        record.notes.append(decision.reason)
        return record
    if decision.action == "refuse":
        record.error = decision.reason
        return record
    if decision.action == "redo":
        record.notes.append(decision.reason)
    remove_stale_partials(output)
    try:
        source = open_source(job.input, max_pixels=settings.max_pixels)
    except (UnreadableImageError, UnsupportedFormatError) as exc:
        record.error = str(exc)
        return record
    except OSError as exc:
        record.error = f"cannot read the file: {exc.strerror or exc}"
        return record
    try:
        _denoise_source(
            source, output, model, settings, model_info, progress, record, replace=decision.action == "redo"
        )
        record.status = "done"
    except KeyboardInterrupt:
        record.status, record.error = "interrupted", "interrupted; no output was written"
        raise
    except MemoryError:
        record.error = _out_of_memory(source, record, settings)
    except OSError as exc:
        if is_write_error(exc):
            record.error = write_error_message(exc, output) + "; the partial output was removed"
        else:
            record.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        record.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, TypeError)) else str(exc)
    finally:
        source.close()
        record.seconds = round(time.perf_counter() - started, 3)
    return record


def _out_of_memory(source, record: FileRecord, settings: BatchSettings) -> str:
    """Say whether one plane is too big for memory (tiles cannot help) or the tiles are."""
    from ..inference.axes import parse_axes

    try:
        layout = parse_axes(record.axes, source.shape)
    except (TypeError, ValueError):
        return "out of memory while opening the image"
    height, width = source.shape[layout.y], source.shape[layout.x]
    channels = source.shape[layout.channel] if layout.channel is not None else 1
    out_itemsize = np.dtype(record.output_dtype or source.dtype).itemsize
    plane = height * width * channels * (source.dtype.itemsize + out_itemsize + (4 if settings.options.tta else 0))
    free = available_memory()
    if free is None or plane > free // 2:
        where = f"; this machine has {readable_size(free)} available" if free is not None else ""
        lazy = (
            "; or run it with --scheduler local (the dask engine reads blocks, not planes)"
            if source.kind == "zarr"
            else ""
        )
        return (
            f"out of memory: one plane of {height} x {width} px ({channels} channel(s)) needs about"
            f" {readable_size(plane)} in memory{where}, and every plane is held whole while it is denoised,"
            f" so a smaller --tile-size does not help. Split the image into smaller planes{lazy}"
        )
    return "out of memory in the network; use a smaller --tile-size or --batch-size"


def _delegate(job: Job, settings: BatchSettings, progress, record: FileRecord, started: float) -> FileRecord:
    """A zarr input with --scheduler: the dask engine reads, plans and writes it (resumably) itself."""
    from .scale_out import check_declared_size_of, denoise_zarr_distributed

    try:
        check_declared_size_of(job.input, settings.max_pixels)
    except (UnreadableImageError, ValueError, OSError) as exc:
        record.error = str(exc)
        return record
    try:
        # the options as the user gave them: each worker resolves device and precision for its own hardware
        options = settings.options
        result = denoise_zarr_distributed(
            job.input,
            job.output,
            settings.model_spec,
            settings.scheduler,
            options,
            axes=settings.axes,
            overwrite=settings.overwrite,
            progress=progress.tiles_done,
        )
        record.status = "done"
        record.notes.append(f"denoised on the dask scheduler {settings.scheduler}")
        _describe_zarr(job, record)
        if isinstance(result, dict):
            record.megapixels = float(result.get("megapixels") or 0.0)
            record.intensity_ranges = result.get("intensity_ranges")
            record.notes.append(f"blocks done {result.get('blocks_done')}, skipped {result.get('blocks_skipped')}")
    except KeyboardInterrupt:
        record.status, record.error = "interrupted", "interrupted; finished blocks are kept and a rerun resumes"
        raise
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        if is_write_error(exc):  # raised on a worker, re-raised here with its errno
            record.error = write_error_message(exc, job.output) + "; finished blocks are kept and a rerun resumes"
        else:
            record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.seconds = round(time.perf_counter() - started, 3)
    return record


def _describe_zarr(job: Job, record: FileRecord) -> None:
    """Shapes and dtypes of a delegated job's input and output, when both are plain zarr arrays."""
    import zarr

    try:
        source, output = zarr.open_array(str(job.input), mode="r"), zarr.open_array(str(job.output), mode="r")
    except Exception:  # noqa: BLE001 - OME-Zarr groups: the engine's own report describes them
        return
    record.shape, record.dtype = list(source.shape), str(source.dtype)
    record.output_shape, record.output_dtype = list(output.shape), str(output.dtype)


def _tiling_text(plan, options: InferenceOptions) -> str:
    """The tiles actually used for this image (after balancing), e.g. ``tiles 512 x 384 px (of --tile-size 1024)``."""
    if options.tile_size is None:
        return "whole planes (one pass each)"
    tiles = plan.tiles
    asked = options.tile_size if isinstance(options.tile_size, tuple) else (options.tile_size, options.tile_size)
    text = (
        f"{len(tiles)} tile(s) of {tiles.tile_height} x {tiles.tile_width} px, overlap {options.effective_overlap} px"
    )
    if (tiles.tile_height, tiles.tile_width) != tuple(asked):
        text += f" (balanced; --tile-size {options.tile_size if not isinstance(options.tile_size, tuple) else 'x'.join(map(str, asked))})"
    return text


def _axes_line(axes: str, source_text: str) -> str:
    """``ZYX (ImageJ metadata)``, with the letters a reader chose explained (``Q: an unnamed axis``...)."""
    odd = [f"{letter}: {AXIS_MEANINGS[letter]}" for letter in axes if letter in AXIS_MEANINGS and letter not in "CTZ"]
    if "Q" in axes or "I" in axes:
        odd.append("processed plane by plane; pass --axes to name them")
    return f"{axes} ({source_text}{'; ' + ', '.join(odd) if odd else ''})"


def _denoise_source(
    source, output, model, settings: BatchSettings, model_info, progress, record, *, replace: bool = False
) -> None:
    from ..inference.pipeline import denoise, plan_denoise

    record.shape, record.dtype = list(source.shape), str(source.dtype)
    record.notes.extend(source.notes)
    signature = input_identity(source.path)  # before reading: a later change is seen by the next run
    options = settings.options
    if options.units is None and source.units is not None:  # the file says what its values are (DICOM CT: HU)
        options = options.replace(units=source.units)
    plan = plan_denoise(source.data, model, axes=settings.axes or source.axes, options=options)
    record.notes.extend(plan.warnings)
    for warning in plan.warnings:
        progress.error(f"{source.path}: {warning}")
    record.axes = plan.layout.axes
    record.axes_source = (
        "--axes" if settings.axes else (source.axes_source if source.axes else "guessed from the shape")
    )
    record.intensity_ranges = plan.intensity_ranges()
    out_dtype = plan.output_dtype
    kind = settings.output_kind
    check_output_dtype(source, out_dtype, kind=kind, axes=record.axes)
    record.output_shape, record.output_dtype = list(source.shape), str(out_dtype)
    tiling = tiling_text(plan.family, settings.options) or _tiling_text(plan, settings.options)
    progress.message(
        f"{source.path}: shape {source.shape} {source.dtype}, axes {_axes_line(record.axes, record.axes_source)},"
        f" {tiling}" + "".join(f"; {note}" for note in source.notes)
    )
    factor = plan.tiles.pixel_factor
    if factor > 4:  # e.g. --tile-size 256 with its derived 240 px overlap: a stride of 16 px
        note = (
            f"these tiles compute each pixel {factor:.0f} times (overlap {settings.options.effective_overlap} px);"
            " a larger --tile-size, or a smaller --overlap, is much faster"
        )
        record.notes.append(note)
        progress.message(f"{source.path}: {note}")
    detail = getattr(progress, "detail", None)  # callers' own progress objects may have only message/tiles_done
    if detail is not None:
        detail(
            f"{source.path}: "
            + "; ".join(plan.notes)
            + "; intensity ranges "
            + ", ".join(f"{r['channels']}: [{r['low']:g}, {r['high']:g}]" for r in record.intensity_ranges)
        )
    provenance = build_provenance(
        model_info,
        settings.provenance_parameters(plan),
        source=str(source.path),
        input_shape=source.shape,
        input_dtype=source.dtype,
        axes=plan.layout.axes,
        signature=signature,
    )
    notes_before = len(plan.notes)
    with atomic_output(output, overwrite=settings.overwrite or replace) as temporary:
        sink = open_sink(source, temporary, source.shape, out_dtype, provenance, kind=kind, axes=record.axes)
        try:
            result = denoise(source.data, model, plan=plan, out=sink.array, progress=progress.tiles_done)
            sink.finish(result)
        except BaseException:
            sink.abort()
            raise
        record.notes.extend(getattr(sink, "notes", []))
        if not sink.embeds_provenance:
            write_sidecar(output, provenance)  # before the rename: an output never lacks its provenance
    for note in plan.notes[notes_before:]:  # found while running, e.g. float16 results clipped
        record.notes.append(note)
        progress.message(f"{source.path}: {note}")
    record.megapixels = round(_megapixels(source.shape, plan.layout), 6)
