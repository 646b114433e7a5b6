"""Common types of the format modules: what a reader returns and what a writer offers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Inputs at most this big are read into memory; larger ones are read lazily (memory map or chunks).
IN_MEMORY_BYTES = 256 * 1024 * 1024


class UnsupportedFormatError(ValueError):
    """The file is not of a format the batch mode reads."""


class UnreadableImageError(ValueError):
    """The file has a supported extension but cannot be read (corrupt, truncated, empty)."""


class MissingExtraError(UnreadableImageError, ImportError):
    """A format needs an optional package that is not installed; the message names the extra to install."""

    def __init__(self, what: str, package: str, extra: str):
        super().__init__(f'{what} needs {package}, which is not installed: pip install "napari-clipdenoise[{extra}]"')


@dataclass
class ImageSource:
    """One opened input image.

    ``data`` is an array-like (numpy array, ``numpy.memmap`` or zarr array) that
    the core reads plane by plane; ``axes`` comes from the file's metadata when
    it has any (``None``: let the core guess from the shape).
    """

    path: Path
    kind: str
    data: Any
    axes: str | None = None
    axes_source: str = "guessed from the shape"
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    closer: Callable[[], None] | None = None
    units: str | None = None  # the values' unit when the file says (DICOM CT, CT NIfTI: "HU")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None


class OutputSink:
    """Where one result goes.

    ``array`` is an array-like the core writes into plane by plane (a memory map
    or a zarr array), or ``None`` when the format is written in one go from the
    in-memory result in :meth:`finish`. After :meth:`finish` returns the
    temporary file is complete and may be renamed into place.
    """

    #: Whether the format holds provenance itself (else a JSON sidecar is written).
    embeds_provenance = True
    array: Any = None

    def finish(self, result) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:
        """Release handles after a failure (the caller deletes the temporary path)."""


def readable_size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes} B"
