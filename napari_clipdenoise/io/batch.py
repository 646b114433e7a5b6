"""Denoise one planned job: open lazily, plan, write atomically with provenance, report.

Failures of one file (unreadable, wrong axes, a format that cannot hold the
output dtype...) become a ``failed`` record with the reason; the caller goes on
with the next file. ``KeyboardInterrupt`` propagates after the temporary output
has been removed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..inference.defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from .atomic import atomic_output, remove_stale_partials
from .base import UnreadableImageError, UnsupportedFormatError
from .discovery import Job
from .formats import check_output_dtype, open_sink, open_source
from .provenance import build_provenance, write_sidecar
from .report import FileRecord


@dataclass
class DenoiseSettings:
    """Resolved options shared by every file of a batch."""

    axes: str | None = None
    tile_size: int | None = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    output_dtype: str | None = None
    intensity_range: str | tuple[float, float] = "auto"
    overwrite: bool = False
    scheduler: str | None = None
    model_spec: str = "gaussian15"
    extra: dict = field(default_factory=dict)

    def provenance_parameters(self, axes: str, output_dtype) -> dict:
        return {
            "axes": axes,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "device": self.device,
            "precision": self.precision,
            "output_dtype": str(output_dtype),
            "intensity_range": self.intensity_range,
            "scheduler": self.scheduler,
        }


def _megapixels(shape, layout) -> float:
    channel = layout.channel
    return math.prod(s for i, s in enumerate(shape) if i != channel) / 1e6


def process_job(job: Job, model, settings: DenoiseSettings, model_info: dict, progress) -> FileRecord:
    """Denoise ``job.input`` into ``job.output``; never raises for per-file problems."""
    record = FileRecord(str(job.input), "failed", str(job.output) if job.output else None)
    if job.error:
        record.error = job.error
        return record
    output: Path = job.output
    delegated = settings.scheduler is not None and job.input.is_dir()
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


def _delegate(job: Job, settings: DenoiseSettings, progress, record: FileRecord, started: float) -> FileRecord:
    """A zarr input with --scheduler: the dask engine reads, plans and writes it (resumably) itself."""
    from .distributed_bridge import denoise_zarr_distributed

    # device, precision and batch size as the user gave them: each worker resolves them for its own hardware
    requested = settings.extra
    options = {
        "axes": settings.axes,
        "tile_size": settings.tile_size,
        "overlap": settings.overlap,
        "device": requested.get("device", settings.device),
        "precision": requested.get("precision", settings.precision),
        "batch_size": requested.get("batch_size", settings.batch_size),
        "intensity_range": settings.intensity_range,
        "output_dtype": settings.output_dtype,
    }
    try:
        result = denoise_zarr_distributed(job.input, job.output, settings, options, progress.tiles_done)
        record.status = "done"
        record.notes.append(f"denoised on the dask scheduler {settings.scheduler}")
        _describe_zarr(job, record)
        if isinstance(result, dict):
            record.megapixels = float(result.get("megapixels") or 0.0)
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


def _denoise_source(source, output, model, settings, model_info, progress, record) -> None:
    from ..inference.pipeline import denoise, plan_denoise

    record.shape, record.dtype = list(source.shape), str(source.dtype)
    record.notes.extend(source.notes)
    axes = settings.axes or source.axes
    plan = plan_denoise(
        source.data,
        model.in_channels,
        axes=axes,
        tile_size=settings.tile_size,
        overlap=settings.overlap,
        output_dtype=settings.output_dtype,
        intensity_range=settings.intensity_range,
    )
    record.axes = plan.layout.axes
    record.axes_source = (
        "--axes" if settings.axes else (source.axes_source if source.axes else "guessed from the shape")
    )
    out_dtype = plan.output_dtype
    check_output_dtype(source, out_dtype)
    record.output_shape, record.output_dtype = list(source.shape), str(out_dtype)
    progress.message(
        f"{source.path}: shape {source.shape} {source.dtype}, axes {record.axes} ({record.axes_source})"
        + "".join(f"; {note}" for note in source.notes)
    )
    provenance = build_provenance(
        model_info,
        settings.provenance_parameters(plan.layout.axes, out_dtype),
        source=str(source.path),
        input_shape=source.shape,
        input_dtype=source.dtype,
        axes=plan.layout.axes,
    )
    options = {
        "axes": plan.layout.axes,
        "tile_size": settings.tile_size,
        "overlap": settings.overlap,
        "device": settings.device,
        "precision": settings.precision,
        "batch_size": settings.batch_size,
        "intensity_range": settings.intensity_range,
    }
    with atomic_output(output, overwrite=settings.overwrite) as temporary:
        sink = open_sink(source, temporary, source.shape, out_dtype, provenance)
        record.notes.extend(getattr(sink, "notes", []))
        try:
            result = denoise(
                source.data, model, output_dtype=out_dtype, out=sink.array, progress=progress.tiles_done, **options
            )
            sink.finish(result)
        except BaseException:
            sink.abort()
            raise
        if not sink.embeds_provenance:
            write_sidecar(output, provenance)
    record.megapixels = round(_megapixels(source.shape, plan.layout), 6)
