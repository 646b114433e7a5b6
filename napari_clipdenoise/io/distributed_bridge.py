"""Hand a zarr input to the dask block engine (``napari_clipdenoise.distributed``), imported only when asked for."""

from __future__ import annotations

import importlib
from pathlib import Path

MISSING_MESSAGE = (
    "--scheduler needs the dask block engine (napari_clipdenoise.distributed), which cannot be imported here: {error}."
    " Install the dask extra (pip install 'napari-clipdenoise[dask]') or run without --scheduler to denoise on this machine"
)


def load_engine():
    """Import ``napari_clipdenoise.distributed``; raise RuntimeError saying what to do when it is missing."""
    try:
        module = importlib.import_module("napari_clipdenoise.distributed")
    except ImportError as exc:
        raise RuntimeError(MISSING_MESSAGE.format(error=exc)) from exc
    if not hasattr(module, "denoise_zarr"):
        raise RuntimeError(MISSING_MESSAGE.format(error="it has no denoise_zarr function"))
    return module


def denoise_zarr_distributed(source: Path, output: Path, settings, options: dict, progress):
    """Run ``denoise_zarr`` on the scheduler; it writes ``output`` itself (resumably, block by block).

    Returns what ``denoise_zarr`` returns (its run report).
    """
    engine = load_engine()
    if settings.overwrite:
        options = {**options, "overwrite": True}
    return engine.denoise_zarr(
        str(source), str(output), settings.model_spec, scheduler=settings.scheduler, progress=progress, **options
    )
