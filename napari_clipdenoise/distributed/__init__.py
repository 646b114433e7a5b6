"""Scale-out: denoise zarr / OME-Zarr / dask volumes block by block on a dask cluster, resumably.

``denoise_zarr(input, output_path, model, scheduler=...)`` is the entry point
(see ``docs/distributed.md``). Importing this package does not import torch,
dask or zarr; they are loaded on first use.
"""

from .._lazy import lazy_exports

_LAZY = {
    "denoise_zarr": "napari_clipdenoise.distributed.engine",
    "plan_blocks": "napari_clipdenoise.distributed.blocks",
    "open_input": "napari_clipdenoise.distributed.store",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
