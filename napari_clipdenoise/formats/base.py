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


class ImageTooLargeError(UnreadableImageError):
    """The file declares more pixels than the limit (``max_pixels``), or more than memory holds to decode it."""


#: Default limit on the pixels (all axes, channels included) one input may declare; raise it per call.
DEFAULT_MAX_PIXELS = 2**34
#: The default limit for PNG/JPEG, which are decoded whole in memory (Pillow's own decompression-bomb limit).
DEFAULT_MAX_DECODED_PIXELS = 2 * 89_478_485


def check_declared_size(shape, dtype, max_pixels: int | None, *, what: str = "the image") -> None:
    """Raise ImageTooLargeError when ``shape`` has more than ``max_pixels`` elements (None: no limit).

    Called with the size a file declares in its header, before anything of that
    size is allocated, decoded or written.
    """
    if max_pixels is None:
        return
    count = 1
    for size in shape:
        count *= int(size)
    if count > max_pixels:
        nbytes = count * np.dtype(dtype).itemsize
        raise ImageTooLargeError(
            f"{what} declares {count:,} pixels (shape {tuple(int(s) for s in shape)}, {readable_size(nbytes)} as"
            f" {np.dtype(dtype)}), more than the limit of {max_pixels:,}; if the file really is that large,"
            f" raise the limit, e.g. max_pixels={_suggest(count)}"
        )


def check_decodable(shape, dtype, *, what: str, factor: float = 2.0) -> None:
    """Raise ImageTooLargeError when decoding ``shape`` in memory (``factor`` copies) needs more than is free."""
    count = 1
    for size in shape:
        count *= int(size)
    needed = int(count * np.dtype(dtype).itemsize * factor)
    free = available_memory()
    if free is not None and needed > free:
        raise ImageTooLargeError(
            f"{what} of {tuple(int(s) for s in shape)} px must be decoded in memory ({readable_size(needed)}),"
            f" more than this machine has available ({readable_size(free)}); convert it to TIFF or zarr,"
            " which are read plane by plane"
        )


def _suggest(count: int) -> int:
    power = max(30, (count - 1).bit_length())
    return 2**power


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, lowered by an address-space limit; None if unknown."""
    available = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            available = soft if available is None else min(available, soft)
    except (ImportError, ValueError, OSError):
        pass
    return available


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
