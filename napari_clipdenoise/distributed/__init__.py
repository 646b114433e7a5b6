"""Scale-out: denoise zarr / OME-Zarr / dask volumes block by block on a dask cluster, resumably.

``denoise_zarr(input, output_path, model, scheduler=...)`` is the entry point
(see ``docs/distributed.md``). Importing this package does not import torch,
dask or zarr; they are loaded on first use.
"""

_LAZY = {
    "denoise_zarr": "napari_clipdenoise.distributed.engine",
    "plan_blocks": "napari_clipdenoise.distributed.blocks",
    "open_input": "napari_clipdenoise.distributed.store",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_clipdenoise.distributed' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
