"""Which format a path is, how to open it and how to write its denoised twin."""

from __future__ import annotations

import json
from pathlib import Path

from .base import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    OutputSink,
    UnreadableImageError,
    UnsupportedFormatError,
    check_declared_size,
)

_SUFFIX_KINDS = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".btf": "tiff",
    ".tf8": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".npy": "npy",
    ".zarr": "zarr",
    ".dcm": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
}
#: Extensions the batch mode reads, for help texts and error messages.
SUPPORTED_EXTENSIONS = tuple(sorted(_SUFFIX_KINDS))
OUTPUT_SUFFIX = "_denoised"
#: Output kinds a result can be written as (``--output-format``), with the extension each gets.
OUTPUT_EXTENSIONS = {"tiff": ".tif", "png": ".png", "jpeg": ".jpg", "npy": ".npy", "zarr": ".zarr"}


def split_name(path: Path) -> tuple[str, str]:
    """``(stem, extension)`` keeping double extensions such as ``.ome.tif`` and ``.ome.zarr`` together."""
    name = path.name
    lower = name.lower()
    for double in (".ome.tiff", ".ome.tif", ".ome.btf", ".ome.zarr", ".nii.gz"):
        if lower.endswith(double) and len(name) > len(double):
            return name[: -len(double)], name[-len(double) :]
    return path.stem, path.suffix


def is_image_folder(path: Path) -> bool:
    """Whether a folder is one image (a zarr store or a DICOM series) rather than a folder of images."""
    from .arrays import is_zarr_dir
    from .dicom import is_dicom_dir

    return path.is_dir() and (is_zarr_dir(path) or is_dicom_dir(path))


def format_of(path: Path) -> str:
    """The reader kind for ``path`` (``tiff``, ``png``, ``jpeg``, ``npy``, ``zarr``, ``dicom``, ``nifti``).

    A folder is a zarr store or a DICOM series (DICOM files and no other images);
    a file without a known extension that starts like a DICOM file is DICOM.
    Raises UnsupportedFormatError naming the extensions that are supported.
    """
    from .arrays import is_zarr_dir
    from .dicom import is_dicom_dir, is_dicom_file

    if path.is_dir():
        if is_zarr_dir(path):
            return "zarr"
        if is_dicom_dir(path):
            return "dicom"
        raise UnsupportedFormatError(
            "is a folder, not a zarr array or a DICOM series (pass --recursive to process folders inside folders)"
        )
    kind = _SUFFIX_KINDS.get(split_name(path)[1].lower()) or _SUFFIX_KINDS.get(path.suffix.lower())
    if kind is None and is_dicom_file(path):
        return "dicom"
    if kind is None or kind == "zarr":
        extension = path.suffix or "(no extension)"
        raise UnsupportedFormatError(
            f"unsupported file type {extension}; supported: {', '.join(SUPPORTED_EXTENSIONS)} (zarr: an array folder;"
            " DICOM: .dcm files, files without an extension, or a series folder)"
        )
    return kind


def output_name(path: Path, *, suffix: str = OUTPUT_SUFFIX, kind: str | None = None) -> str:
    """``<stem><suffix>.<ext>`` for an input path; ``kind`` (e.g. ``"tiff"``) changes the extension.

    A DICOM series folder becomes ``<name><suffix>`` (a folder of the same kind).
    """
    if path.is_dir() and not split_name(path)[1].lower().endswith(".zarr") and kind in (None, "dicom"):
        return f"{path.name}{suffix}"
    stem, extension = split_name(path)
    if kind is not None and _SUFFIX_KINDS.get(Path(extension).suffix.lower()) != kind:
        extension = OUTPUT_EXTENSIONS[kind]
    return f"{stem}{suffix}{extension}"


def looks_like_output(path: Path, *, suffix: str = OUTPUT_SUFFIX) -> bool:
    """Whether a file found in a folder is itself a result (``*<suffix>.*`` or its sidecar)."""
    if not suffix:
        return False
    name = path.name
    if name.endswith(".json") and suffix + "." in name:
        return True
    return split_name(path)[0].endswith(suffix) or name.endswith(suffix)


def open_source(path: Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageSource:
    """Open an input lazily; raise UnsupportedFormatError or UnreadableImageError with the reason.

    ``max_pixels``: the most pixels the file may declare (None: no limit); checked
    before anything of that size is allocated (:class:`~.base.ImageTooLargeError`).
    """
    kind = format_of(path)
    if path.is_file() and path.stat().st_size == 0:
        raise UnreadableImageError("the file is empty (0 bytes)")
    source = _open(path, kind, max_pixels)
    try:
        check_declared_size(source.shape, source.dtype, max_pixels, what=f"the {_LABELS.get(kind, kind)} input")
    except UnreadableImageError:
        source.close()
        raise
    return source


_LABELS = {"tiff": "TIFF", "png": "PNG", "jpeg": "JPEG", "npy": "NPY"}


def _open(path: Path, kind: str, max_pixels) -> ImageSource:
    if kind == "tiff":
        from .tiff import read_tiff

        return read_tiff(path, max_pixels=max_pixels)
    if kind in ("png", "jpeg"):
        from .raster import read_raster

        return read_raster(path, kind, max_pixels=max_pixels)
    if kind == "npy":
        from .arrays import read_npy

        return read_npy(path)
    if kind == "dicom":
        from .dicom import read_dicom

        return read_dicom(path)
    if kind == "nifti":
        from .nifti import read_nifti

        return read_nifti(path)
    from .arrays import read_zarr

    return read_zarr(path)


def check_output_dtype(source: ImageSource, dtype, *, kind: str | None = None, axes: str | None = None) -> None:
    """Raise ValueError when the output format (``kind``, default the input's) cannot hold the result.

    Checked before any pixel is computed: PNG holds uint8/uint16 and JPEG uint8
    images that are 2D grey or have colour samples last.
    """
    import numpy as np

    from .raster import JPEG_DTYPES, PNG_DTYPES

    kind = kind or source.kind
    allowed = {"png": PNG_DTYPES, "jpeg": JPEG_DTYPES}.get(kind)
    if allowed is None:
        return
    if np.dtype(dtype) not in allowed:
        names = " or ".join(str(d) for d in allowed)
        hint = "drop --output-dtype" if kind == source.kind else "choose another --output-format, e.g. tif"
        raise ValueError(f"{kind.upper()} files hold {names} pixels, not {np.dtype(dtype)}; {hint}")
    shape = source.shape
    samples = {"png": (2, 3, 4), "jpeg": (3,)}[kind]
    flat = len(shape) == 2 or (len(shape) == 3 and shape[-1] in samples and (axes is None or axes[-1] in "CS"))
    if not flat:
        raise ValueError(
            f"{kind.upper()} files hold one 2D image (grey or colour samples last), not shape {shape}"
            f"{f' (axes {axes})' if axes else ''}; choose --output-format tif, npy or zarr"
        )


def open_sink(
    source: ImageSource, temporary: Path, shape, dtype, provenance: dict, *, kind: str | None = None, axes=None
) -> OutputSink:
    """Create the output for ``source`` at ``temporary`` (its format, or ``kind``; given shape and dtype).

    ``axes`` (the resolved axis letters) describe the output when it is written
    in another format than the input's (``kind``).
    """
    kind = kind or source.kind
    if kind == "tiff":
        from .tiff import TiffSink

        return TiffSink(temporary, source, shape, dtype, provenance, axes=axes)
    if kind in ("png", "jpeg"):
        from .raster import RasterSink

        return RasterSink(temporary, source, dtype, provenance, kind=kind)
    if kind == "npy":
        from .arrays import NpySink

        return NpySink(temporary, shape, dtype)
    if kind == "dicom":
        from .dicom import DicomSink

        return DicomSink(temporary, source, shape, dtype, provenance)
    if kind == "nifti":
        from .nifti import NiftiSink

        return NiftiSink(temporary, source, shape, dtype, provenance)
    from .arrays import ZarrSink

    return ZarrSink(temporary, source, shape, dtype, provenance, axes=axes)


def read_provenance(path: Path) -> dict | None:
    """The provenance of an output: from its metadata, else from its ``.json`` sidecar."""
    from .provenance import sidecar_path

    path = Path(path)
    kind = format_of(path)
    found = None
    if kind == "tiff":
        from .tiff import read_provenance as reader

        found = reader(path)
    elif kind in ("png", "jpeg"):
        from .raster import read_provenance as reader

        found = reader(path)
    elif kind == "zarr":
        from .arrays import read_zarr_provenance

        found = read_zarr_provenance(path)
    elif kind == "dicom":
        from .dicom import read_provenance as reader

        found = reader(path)
    elif kind == "nifti":
        from .nifti import read_provenance as reader

        found = reader(path)
    if found is None and sidecar_path(path).is_file():
        found = json.loads(sidecar_path(path).read_text())
    return found


__all__ = [
    "OUTPUT_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "ImageSource",
    "OutputSink",
    "UnreadableImageError",
    "UnsupportedFormatError",
    "check_output_dtype",
    "format_of",
    "is_image_folder",
    "looks_like_output",
    "open_sink",
    "open_source",
    "output_name",
    "read_provenance",
    "split_name",
]
