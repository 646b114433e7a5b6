"""What a model string means: an installed name, a registry name, a bundled model, a file or a URL.

:func:`parse_model_source` is the one place that decides it. ``load_model``,
the command line, both widgets and the evaluation all call it, so a name with
a dot, a relative path or a URL means the same everywhere. Nothing here imports
torch or reads a weights file.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .cache import installed_path
from .catalog import BUNDLED, REGISTRY
from .names import CHECKPOINT_SUFFIXES, NAME_RULE, is_valid_name, validate_model_name

KINDS = ("installed", "bundled", "registry", "file", "url", "unknown")
__all__ = [
    "CHECKPOINT_SUFFIXES", "KINDS", "NAME_RULE", "ModelSource", "is_valid_name", "looks_like_path",
    "parse_model_source", "validate_model_name",
]  # fmt: skip


@dataclass(frozen=True)
class ModelSource:
    """The meaning of one model string.

    ``kind`` is ``installed`` (in the cache), ``bundled`` (shipped inside the
    package), ``registry`` (a known name whose weights are not installed),
    ``file`` (a path; ``exists`` says whether it is there), ``url`` (http/https)
    or ``unknown`` (a name nothing knows, or a string that is no valid name).
    """

    kind: str
    text: str
    name: str | None = None
    path: Path | None = None

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.is_file()

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def loadable(self) -> bool:
        """Whether ``load_model`` can load it now without downloading anything."""
        return self.kind in ("installed", "bundled") or (self.kind == "file" and self.exists)

    def mtime(self) -> int | None:
        """Modification time of the file behind it (to notice a re-installed model), or None."""
        try:
            return os.stat(self.path).st_mtime_ns if self.path is not None else None
        except OSError:
            return None


def looks_like_path(text: str) -> bool:
    """Whether ``text`` is meant as a path rather than a name (even if no such file exists)."""
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith(("~", "."))
        or text.lower().endswith(CHECKPOINT_SUFFIXES)
    )


def parse_model_source(source) -> ModelSource:
    """Decide what ``source`` (a string or path) names; see :class:`ModelSource`.

    Order: an http(s) URL; an existing file; a string that looks like a path
    (``looks_like_path``: a separator, ``~`` or ``.`` first, or a checkpoint
    extension); an installed name; a bundled model; a registry name; else unknown.
    """
    text = os.fspath(source)
    scheme = urllib.parse.urlparse(text).scheme.lower()
    if scheme in ("http", "https"):
        return ModelSource("url", text)
    path = Path(text).expanduser()
    if path.is_file() or looks_like_path(text) or path.is_dir():
        return ModelSource("file", text, name=path.stem, path=path)
    if not is_valid_name(text):
        return ModelSource("unknown", text)
    installed = installed_path(text)
    if installed.is_file():
        return ModelSource("installed", text, name=text, path=installed)
    if text in BUNDLED:
        return ModelSource("bundled", text, name=text, path=BUNDLED[text].path)
    if text in REGISTRY:
        return ModelSource("registry", text, name=text)
    return ModelSource("unknown", text, name=text)
