"""napari reader contribution: DICOM series folders, DICOM files and NIfTI volumes, opened on their geometry.

``get_reader(path)`` (the npe2 ``readers`` command) returns a reader for a DICOM
series folder, a ``.dcm`` file (or a list of DICOM files of one series) and
``.nii``/``.nii.gz`` files, and None for anything else, so napari tries other
plugins. The layer gets scale and translate from the spacing and origin (mm),
axis labels z/y/x, and, for CT in HU, a soft-tissue window; its metadata holds
the geometry and the values' unit under ``"clipdenoise_source"``, which the Denoise
widget reads to feed a CT model on its own scale.

Reading uses the core's format modules (``formats/dicom.py``, ``formats/nifti.py``);
volumes too big for memory become dask arrays read slice by slice when dask is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Metadata key of the layers this reader makes.
SOURCE_KEY = "clipdenoise_source"
#: The window a CT layer opens with: soft tissue, W400 / L40.
SOFT_TISSUE_LIMITS = (-160.0, 240.0)


def _kind(path: Path) -> str | None:
    from .formats.dicom import is_dicom_dir, is_dicom_file
    from .formats.nifti import is_nifti

    if path.is_dir():
        return "dicom" if is_dicom_dir(path) else None
    if is_nifti(path):
        return "nifti"
    if path.suffix.lower() == ".dcm" or is_dicom_file(path):
        return "dicom"
    return None


def get_reader(path):
    """The reader for ``path`` (a path or a list of paths) when it is DICOM or NIfTI, else None."""
    if isinstance(path, (list, tuple)):
        paths = [Path(os.fspath(p)) for p in path]
        if len(paths) == 1:
            return get_reader(paths[0])
        if paths and all(p.is_file() and _kind(p) == "dicom" for p in paths):
            return read_ct
        return None
    return read_ct if _kind(Path(os.fspath(path))) is not None else None


def _open(path):
    from .formats.dicom import read_dicom
    from .formats.nifti import read_nifti

    if isinstance(path, (list, tuple)):
        paths = [Path(os.fspath(p)) for p in path]
        return read_dicom(paths[0] if len(paths) == 1 else paths)
    path = Path(os.fspath(path))
    return read_nifti(path) if _kind(path) == "nifti" else read_dicom(path)


def _napari_array(data):
    """Numpy as is; a lazy volume as a dask array of one slice per chunk (or read whole without dask)."""
    import numpy as np

    if isinstance(data, np.ndarray):
        return data
    try:
        import dask.array as da
    except ImportError:
        return np.asarray(data)
    chunks = (1,) * (len(data.shape) - 2) + tuple(data.shape[-2:])
    return da.from_array(data, chunks=chunks, asarray=True, fancy=False)


def read_ct(path) -> list[tuple]:
    """Layer data for napari: ``[(array, {scale, translate, name, metadata, ...}, "image")]``."""
    source = _open(path)
    geometry = source.info.get("geometry", {})
    ndim = len(source.shape)
    spacing = list(geometry.get("spacing", [1.0] * min(3, ndim)))
    translate = list(geometry.get("translate", [0.0] * len(spacing)))
    if ndim == 2:  # one DICOM slice: Y and X only
        spacing, translate = spacing[-2:], translate[-2:]
    pad = ndim - len(spacing)  # leading axes without geometry (T, C of a 4D/5D NIfTI)
    scale = [1.0] * pad + [float(s) for s in spacing]
    translate = [0.0] * pad + [float(t) for t in translate]
    letters = (source.axes or "")[-ndim:]
    name = source.path.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    metadata = {
        SOURCE_KEY: {
            "path": str(source.path),
            "format": source.kind,
            "axes": source.axes,
            "units": source.units,
            "geometry": {k: v for k, v in geometry.items() if k != "affine"},
            "notes": list(source.notes),
        }
    }
    if "affine" in geometry:
        metadata[SOURCE_KEY]["affine"] = geometry["affine"]
    kwargs = {
        "name": name,
        "scale": scale,
        "translate": translate,
        "axis_labels": tuple(letter.lower() for letter in letters) if len(letters) == ndim else None,
        "units": tuple(["pixel"] * pad + [str(geometry.get("unit") or "mm")] * (ndim - pad)),
        "metadata": metadata,
        "colormap": "gray",
    }
    if source.units == "HU":
        kwargs["contrast_limits"] = SOFT_TISSUE_LIMITS
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kwargs.get("units", ("mm",))[-1] in ("unknown", ""):
        kwargs.pop("units")
    return [(_napari_array(source.data), kwargs, "image")]
