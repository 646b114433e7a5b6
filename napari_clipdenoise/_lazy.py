"""Lazy attribute export for packages whose names live in heavy modules (torch, dask, zarr)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, names: dict[str, str], namespace: dict):
    """Return ``(__getattr__, __dir__)`` that import ``names[attr]`` only when ``attr`` is first used."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(namespace.get("__all__", names))

    return __getattr__, __dir__
