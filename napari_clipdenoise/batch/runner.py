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

from ..formats import check_output_dtype, open_sink, open_source
from ..formats.arrays import is_zarr_dir
from ..formats.atomic import atomic_output, remove_stale_partials
from ..formats.base import UnreadableImageError, UnsupportedFormatError
from ..formats.provenance import build_provenance, write_sidecar
from ..inference.options import InferenceOptions, ResolvedOptions
from .discovery import Job
from .report import FileRecord


@dataclass
class BatchSettings:
    """What every file of a batch shares: the inference options and how outputs are handled."""

    options: InferenceOptions
    model_spec: str
    axes: str | None = None
    overwrite: bool = False
    scheduler: str | None = None
    resolved: ResolvedOptions | None = None  # device, precision, batch size on this machine (in-process runs)

    def record(self) -> dict:
        """The settings for the batch report."""
        record = {"model": self.model_spec, "axes": self.axes, "overwrite": self.overwrite, "scheduler": self.scheduler}
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
    output: Path = job.output
    delegated = settings.scheduler is not None and is_zarr_dir(job.input)
    if output.exists() and not settings.overwrite and not delegated:
        record.status = "skipped"
        record.notes.append("the output exists (pass --overwrite to redo it)")
        return record
    remove_stale_partials(output)
    started = time.perf_counter()
    if delegated:
        return _delegate(job, settings, progress, record, started)
    try:
        source = open_source(job.input)
    except (UnreadableImageError, UnsupportedFormatError) as exc:
        record.error = str(exc)
        return record
    except OSError as exc:
        record.error = f"cannot read the file: {exc.strerror or exc}"
        return record
    try:
        _denoise_source(source, output, model, settings, model_info, progress, record)
        record.status = "done"
    except KeyboardInterrupt:
        record.status, record.error = "interrupted", "interrupted; no output was written"
        raise
    except MemoryError:
        record.error = "out of memory; use a smaller --tile-size or --batch-size"
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        record.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, TypeError)) else str(exc)
    finally:
        source.close()
        record.seconds = round(time.perf_counter() - started, 3)
    return record


def _delegate(job: Job, settings: BatchSettings, progress, record: FileRecord, started: float) -> FileRecord:
    """A zarr input with --scheduler: the dask engine reads, plans and writes it (resumably) itself."""
    from .scale_out import denoise_zarr_distributed

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


def _denoise_source(source, output, model, settings: BatchSettings, model_info, progress, record) -> None:
    from ..inference.pipeline import denoise, plan_denoise

    record.shape, record.dtype = list(source.shape), str(source.dtype)
    record.notes.extend(source.notes)
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
    check_output_dtype(source, out_dtype)
    record.output_shape, record.output_dtype = list(source.shape), str(out_dtype)
    progress.message(
        f"{source.path}: shape {source.shape} {source.dtype}, axes {record.axes} ({record.axes_source})"
        + "".join(f"; {note}" for note in source.notes)
    )
    provenance = build_provenance(
        model_info,
        settings.provenance_parameters(plan),
        source=str(source.path),
        input_shape=source.shape,
        input_dtype=source.dtype,
        axes=plan.layout.axes,
    )
    with atomic_output(output, overwrite=settings.overwrite) as temporary:
        sink = open_sink(source, temporary, source.shape, out_dtype, provenance)
        record.notes.extend(getattr(sink, "notes", []))
        try:
            result = denoise(source.data, model, plan=plan, out=sink.array, progress=progress.tiles_done)
            sink.finish(result)
        except BaseException:
            sink.abort()
            raise
        if not sink.embeds_provenance:
            write_sidecar(output, provenance)
    record.megapixels = round(_megapixels(source.shape, plan.layout), 6)
