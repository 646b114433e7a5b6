"""``clipdenoise info``: versions, devices and the model cache."""

from __future__ import annotations

import os

from .. import __version__
from .common import EXIT_OK


def add_parser(commands) -> None:
    commands.add_parser("info", help="versions, devices and the model cache").set_defaults(handler=command_info)


def command_info(args) -> int:
    import platform
    from importlib import metadata

    from ..model.registry import cache_dir, installed_models

    print(f"napari-clipdenoise {__version__}, Python {platform.python_version()} on {platform.platform()}")
    for package in ("numpy", "torch", "safetensors", "tifffile", "imageio", "zarr", "dask", "napari"):
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {package:<12} {version}")
    try:
        import torch

        from ..inference.device import cpu_has_native_bf16, resolve_device
    except ImportError as exc:
        print(f"devices: torch cannot be imported ({exc})")
    else:
        print(
            f"devices: cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads,"
            f" native bf16: {'yes' if cpu_has_native_bf16() else 'no'})"
        )
        for index in range(torch.cuda.device_count()):
            print(f"  cuda:{index} {torch.cuda.get_device_name(index)}")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            print("  mps (Apple GPU)")
        print(f"  default device: {resolve_device('auto')}")
    models = installed_models()
    print(f"model cache: {cache_dir()} ({', '.join(models) if models else 'no model installed'})")
    return EXIT_OK
