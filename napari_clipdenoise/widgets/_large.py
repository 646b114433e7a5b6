"""Layers too big for memory: denoise block by block into a zarr store, then open it lazily.

Used by the Denoise widget for lazy (dask/zarr) layers above a size threshold;
the work is :func:`napari_clipdenoise.distributed.denoise_zarr` (the current
dask client if one is running, else this process).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np

from ..errors import DenoiseCancelled
from ..jobs import JobOutcome, Progress, iterate_progress

logger = logging.getLogger(__name__)

#: Lazy layers with more bytes than this are written to a zarr store instead of memory.
LARGE_LAYER_BYTES = 2 * 1024**3


def is_lazy(image) -> bool:
    """True for arrays that are not in memory (dask, zarr, ...)."""
    return not isinstance(image, np.ndarray)


def nbytes(image) -> int:
    return int(np.prod(tuple(int(s) for s in image.shape), dtype=np.int64)) * np.dtype(image.dtype).itemsize


def goes_to_zarr(image, threshold: int = LARGE_LAYER_BYTES) -> bool:
    return is_lazy(image) and nbytes(image) > threshold


def output_store(layer_name: str, folder: str | None) -> tuple[Path, bool]:
    """Where to write: ``<folder>/<layer>_denoised.zarr``, or a new temporary folder. Returns (path, temporary)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer_name) or "layer"
    if folder:
        base = Path(folder).expanduser()
        if not base.is_dir():
            raise ValueError(f"output folder {base} does not exist; create it or leave the field empty")
        return base / f"{safe}_denoised.zarr", False
    return Path(tempfile.mkdtemp(prefix="clipdenoise-")) / f"{safe}_denoised.zarr", True


def denoise_to_zarr_job(
    image, source, settings, cancel: threading.Event, output: Path, temporary: bool
) -> Generator[Progress, None, JobOutcome]:
    """Worker generator: ``denoise_zarr`` into ``output``, then the result opened lazily as a dask array.

    ``source`` is a registry name, a checkpoint path or a loaded model with a file
    path (workers load the model from the file). On cancel or error a temporary
    store is deleted; a store in a chosen folder is kept so a later run resumes it.
    """
    started = time.perf_counter()
    try:
        from ..model.registry import DenoisingModel

        if not isinstance(source, DenoisingModel):
            yield Progress(0, 0, "loading model")
        from ..distributed import denoise_zarr
        from ..model.registry import load_model

        model = load_model(source)
        yield Progress(0, 0, "denoising blocks")
        report = yield from iterate_progress(
            lambda progress: denoise_zarr(
                image,
                output,
                model.path if model.path is not None else source,
                axes=settings.axes,
                options=settings.options,
                progress=progress,
                cancel=cancel,
            ),
            message="denoising blocks",
            cancel=cancel,
        )
        if cancel.is_set():
            raise DenoiseCancelled("denoising was cancelled")
        import dask.array as da
        import zarr

        result = da.from_zarr(zarr.open_array(str(output), mode="r"))
    except DenoiseCancelled:
        _discard(output, temporary)
        return JobOutcome(cancelled=True, info={"output": str(output), "temporary": temporary})
    except ImportError as exc:
        _discard(output, temporary)
        return JobOutcome(
            error=ImportError(
                f"layers too big for memory are denoised with dask and zarr, which are not installed ({exc});"
                ' install them with: pip install "napari-clipdenoise[dask]"'
            )
        )
    except Exception as exc:
        logger.debug("zarr denoise job failed", exc_info=True)
        _discard(output, temporary)
        return JobOutcome(error=exc)
    return JobOutcome(
        result, info={"model": model, "seconds": time.perf_counter() - started, "output": str(output), "report": report}
    )


def _discard(output: Path, temporary: bool) -> None:
    if temporary:
        shutil.rmtree(output.parent, ignore_errors=True)
