"""Image file formats: readers, writers, atomic outputs and the provenance they carry.

Modules (each with one job): ``dispatch`` (which format a path is, open/write by
format), ``base`` (what a reader returns and a writer offers), ``tiff``,
``raster`` (PNG/JPEG), ``arrays`` (NPY, zarr), ``dicom`` (DICOM series, pydicom),
``nifti`` (NIfTI, nibabel), ``atomic`` (temporary file + rename) and ``provenance``.
Importing this package imports neither torch nor any image library.
"""

from .dispatch import (
    SUPPORTED_EXTENSIONS,
    check_output_dtype,
    format_of,
    looks_like_output,
    open_sink,
    open_source,
    output_name,
    read_provenance,
    split_name,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "check_output_dtype",
    "format_of",
    "looks_like_output",
    "open_sink",
    "open_source",
    "output_name",
    "read_provenance",
    "split_name",
]
