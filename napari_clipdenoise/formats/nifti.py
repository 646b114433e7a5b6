"""NIfTI in and out (nibabel, the ``ct`` extra): ``.nii`` and ``.nii.gz``, affine and header kept.

Reading
    NIfTI stores voxels as (i, j, k[, t, ...]) with i fastest; the core wants
    (..., Z, Y, X), so the axes are reversed (``ZYX``, ``TZYX``, ``CTZYX``), as a
    view. ``scl_slope``/``scl_inter`` are applied (the values become float32); a
    volume larger than :data:`~.base.IN_MEMORY_BYTES` is read lazily through
    nibabel's array proxy. A volume whose values go below -500 is taken to be CT
    in HU (``units="HU"``; air is about -1000 HU, and MR or PET volumes have no such
    values), else its unit is left undeclared, with a note either way.
Writing
    ``<stem>_denoised.nii[.gz]`` with a copy of the input's header (affine, qform and
    sform with their codes, pixdim, units, description, intent, extensions) and the
    same on-disk data type: scaled inputs are re-encoded through their own
    ``scl_slope``/``scl_inter``. The provenance JSON is added as a NIfTI extension
    (code 6, "comment").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..inference.scale_fit import HU_EVIDENCE
from .base import IN_MEMORY_BYTES, ImageSource, MissingExtraError, OutputSink, UnreadableImageError
from .provenance import PROVENANCE_KEY, to_json

EXTRA = "ct"
_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "CTZYX"}
COMMENT_CODE = 6


def require_nibabel():
    try:
        import nibabel
    except ImportError:
        raise MissingExtraError("reading and writing NIfTI", "nibabel", EXTRA) from None
    return nibabel


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _scaling(proxy) -> tuple[float, float] | None:
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return None if (slope, inter) == (1.0, 0.0) else (slope, inter)


class ReversedVolume:
    """A NIfTI array proxy with its axes reversed, read lazily (only the voxels asked for), scaled to float32."""

    def __init__(self, proxy, scaling: tuple[float, float] | None, dtype: np.dtype):
        self.proxy = proxy
        self.scaling = scaling
        self.shape = tuple(int(s) for s in reversed(proxy.shape))
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32) if scaling else np.dtype(dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        values = np.asarray(self.proxy[tuple(reversed(key))])  # nibabel applies scl_slope/scl_inter (float64)
        values = np.transpose(values, tuple(range(values.ndim - 1, -1, -1)))
        return values.astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        values = self[tuple(slice(None) for _ in self.shape)]
        return values if dtype is None else values.astype(dtype)


def read_nifti(path: Path) -> ImageSource:
    nibabel = require_nibabel()
    try:
        image = nibabel.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel's ImageFileError, gzip errors...
        raise UnreadableImageError(f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    proxy = image.dataobj
    disk_dtype = np.dtype(image.get_data_dtype())
    if disk_dtype.fields is not None or disk_dtype.kind not in "uif":
        raise UnreadableImageError(f"NIfTI data of type {disk_dtype} (e.g. RGB) are not supported")
    shape = tuple(int(s) for s in proxy.shape)
    while len(shape) > 2 and shape[-1] == 1:  # trailing singleton dims (a 3D volume stored as X x Y x Z x 1)
        shape = shape[:-1]
    if len(shape) not in _AXES:
        raise UnreadableImageError(f"NIfTI data with {len(shape)} dimensions are not supported (2 to 5)")
    scaling = _scaling(proxy)
    notes = []
    if scaling:
        notes.append(f"scl_slope {scaling[0]:g} and scl_inter {scaling[1]:g} applied (float32 values)")
    dtype = np.dtype(np.float32) if scaling else disk_dtype
    nbytes = int(np.prod(shape)) * dtype.itemsize
    try:
        if nbytes <= IN_MEMORY_BYTES:
            raw = np.asarray(proxy.get_unscaled()).reshape(shape)
            values = raw.astype(np.float32) * np.float32(scaling[0]) + np.float32(scaling[1]) if scaling else raw
            data = np.transpose(values, tuple(range(len(shape) - 1, -1, -1)))
        else:
            if tuple(proxy.shape) != shape:
                proxy = proxy.reshape(shape)
            data = ReversedVolume(proxy, scaling, disk_dtype)
            notes.append("read lazily (through nibabel's array proxy)")
    except Exception as exc:  # noqa: BLE001 - truncated gzip streams and the like
        raise UnreadableImageError(f"NIfTI data cannot be read ({type(exc).__name__}: {exc})") from exc
    zooms = [float(z) for z in image.header.get_zooms()[: len(shape)]]
    spatial = min(3, len(shape))
    affine = np.asarray(image.affine, dtype=float)
    columns = affine[:3, :spatial]
    spacing = [float(np.linalg.norm(columns[:, i])) or 1.0 for i in range(spatial)]
    geometry = {
        "affine": affine.tolist(),
        "spacing": list(reversed(spacing)),  # Z, Y, X
        "translate": [float(v) for v in reversed(affine[:spatial, 3])],
        "unit": image.header.get_xyzt_units()[0] or "unknown",
        "zooms": zooms,
    }
    units = _units(data, notes)
    info = {"nifti_header": image.header.copy(), "nifti_class": type(image), "scaling": scaling, "geometry": geometry}
    return ImageSource(
        path, "nifti", data, _AXES[len(shape)], "NIfTI (i, j, k axes reversed)", info, notes, units=units
    )


def _units(data, notes: list[str]) -> str | None:
    """Return "HU" when sampled values include air (below :data:`HU_EVIDENCE`), else None."""
    if isinstance(data, np.ndarray):
        minimum = float(np.min(data)) if data.size else 0.0
    else:
        planes = data.shape[0] if data.ndim >= 3 else 1
        picks = sorted({int(round(v)) for v in np.linspace(0, planes - 1, min(planes, 8))})
        minimum = min(float(np.min(data[p])) for p in picks) if data.ndim >= 3 else float(np.min(np.asarray(data)))
    if minimum <= HU_EVIDENCE:
        notes.append(f"values down to {minimum:g}: taken as CT in HU (units HU)")
        return "HU"
    notes.append(f"no values below {HU_EVIDENCE:g}: not taken as CT in HU (pass --units HU if they are)")
    return None


class NiftiSink(OutputSink):
    """The result written at the end with the input's header and on-disk data type."""

    embeds_provenance = True
    array = None

    def __init__(self, temporary: Path, source: ImageSource, shape, dtype, provenance: dict):
        require_nibabel()
        self.temporary = temporary
        self.source = source
        self.dtype = np.dtype(dtype)
        self.provenance = provenance
        self.notes: list[str] = []

    def finish(self, result) -> None:
        nibabel = require_nibabel()
        info = self.source.info
        header = info["nifti_header"].copy()
        values = np.asarray(result)
        values = np.transpose(values, tuple(range(values.ndim - 1, -1, -1)))  # back to i, j, k
        disk_dtype = np.dtype(header.get_data_dtype())
        scaling = info["scaling"]
        if scaling and disk_dtype.kind in "ui" and self.dtype == self.source.dtype:
            slope, inter = scaling
            stored = np.rint((values.astype(np.float64) - inter) / slope)
            limits = np.iinfo(disk_dtype)
            clipped = int(np.count_nonzero((stored < limits.min) | (stored > limits.max)))
            if clipped:
                self.notes.append(f"{clipped} voxel(s) beyond the {disk_dtype} range were clipped to it")
            values = np.clip(stored, limits.min, limits.max).astype(disk_dtype)
        elif self.dtype != disk_dtype or scaling:
            header.set_data_dtype(self.dtype)
            scaling = None
            values = values.astype(self.dtype, copy=False)
        original_shape = header.get_data_shape()
        if len(original_shape) > values.ndim:
            values = values.reshape(original_shape)
        image = info["nifti_class"](values, None, header=header)
        if scaling:
            image.header.set_slope_inter(*scaling)
        image.header.extensions.append(
            nibabel.nifti1.Nifti1Extension(COMMENT_CODE, to_json({PROVENANCE_KEY: self.provenance}).encode())
        )
        nibabel.save(image, str(self.temporary))


def read_provenance(path: Path) -> dict | None:
    nibabel = require_nibabel()
    header = nibabel.load(str(path)).header
    for extension in header.extensions:
        if extension.get_code() != COMMENT_CODE:
            continue
        try:
            document = json.loads(extension.get_content())
        except (ValueError, TypeError):
            continue
        if isinstance(document, dict) and PROVENANCE_KEY in document:
            return document[PROVENANCE_KEY]
    return None
