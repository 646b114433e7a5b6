"""What a model name may be: the rule for names that become file names in the model cache."""

from __future__ import annotations

import re
from pathlib import Path

#: Extensions that make a string a checkpoint path even when the file does not exist.
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"


def validate_model_name(name: str) -> str:
    """Return ``name`` if it can name an installed model, else raise ValueError saying why.

    Names are file names in the cache folder: no path separators, no leading dot,
    no ``..``, and no checkpoint extension (``my.pth`` would read as a file path).
    """
    if not isinstance(name, str) or not _NAME_PATTERN.match(name) or ".." in name:
        raise ValueError(f"model name {name!r} is not valid: use {NAME_RULE}")
    if name.lower().endswith(CHECKPOINT_SUFFIXES):
        raise ValueError(f"model name {name!r} ends like a file ({Path(name).suffix}); drop the extension")
    return name


def is_valid_name(name: str) -> bool:
    try:
        validate_model_name(name)
    except ValueError:
        return False
    return True
