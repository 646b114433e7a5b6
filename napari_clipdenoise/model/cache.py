"""The local model cache: where installed models live (nothing here reads a weights file).

The folder is ``platformdirs.user_cache_dir("napari-clipdenoise")/models`` unless
``CLIPDENOISE_CACHE_DIR`` names another; installed models are ``<name>.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .names import validate_model_name

CACHE_ENV_VAR = "CLIPDENOISE_CACHE_DIR"


def cache_dir() -> Path:
    """The folder holding installed models (not created by this call)."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-clipdenoise")) / "models"


def installed_path(name: str) -> Path:
    """Where the model ``name`` is installed (ValueError for a name that could leave the cache folder)."""
    return cache_dir() / f"{validate_model_name(name)}.safetensors"


def installed_models() -> list[str]:
    folder = cache_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors") if not p.name.startswith("."))
