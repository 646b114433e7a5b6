"""Hand a zarr input to the dask block engine (``napari_clipdenoise.distributed``) when ``--scheduler`` asks for it."""

from __future__ import annotations

from pathlib import Path

MISSING_MESSAGE = (
    "--scheduler needs the dask block engine (the dask extra), which cannot be imported here ({error})."
    " Install it (pip install 'napari-clipdenoise[dask]') or run without --scheduler to denoise on this machine"
)


def check_engine() -> None:
    """Raise RuntimeError saying what to install when the dask engine's packages are missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import zarr  # noqa: F401

        from ..distributed import denoise_zarr  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(MISSING_MESSAGE.format(error=exc)) from exc


def denoise_zarr_distributed(
    source: Path, output: Path, model_spec: str, scheduler, options, *, axes=None, overwrite=False, progress=None
):
    """Run ``denoise_zarr`` on the scheduler; it writes ``output`` itself (resumably, block by block).

    Returns what ``denoise_zarr`` returns (its run report).
    """
    check_engine()
    from ..distributed import denoise_zarr

    return denoise_zarr(
        str(source),
        str(output),
        model_spec,
        scheduler=scheduler,
        options=options,
        axes=axes,
        overwrite=overwrite,
        progress=progress,
    )
