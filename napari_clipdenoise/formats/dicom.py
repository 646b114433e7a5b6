"""DICOM in and out (pydicom, the ``ct`` extra): a series folder, a list of files, or one (multi-frame) file.

Reading
    The files of one series are ordered by their position along the slice normal
    (``ImagePositionPatient`` projected on the cross product of the two
    ``ImageOrientationPatient`` directions; ``InstanceNumber`` when positions are
    missing). The modality LUT is applied: values are ``stored * RescaleSlope +
    RescaleIntercept`` as float32, i.e. HU for CT (declared as ``units="HU"``).
    Spacing (Z, Y, X in mm), origin and orientation are kept in ``info["geometry"]``.
    A series larger than :data:`~.base.IN_MEMORY_BYTES` is read slice by slice
    (:class:`DicomVolume`). Compressed transfer syntaxes are decoded by pydicom's
    plugins; when none is installed for one, the error names the package to install.
Writing
    ``<series>_denoised/`` next to a series folder (same file names), or
    ``<stem>_denoised.dcm`` for one file: every header element is kept except that
    the pixels are re-encoded through each slice's own slope and intercept into the
    original pixel representation (bits stored, signedness; padding pixels kept),
    with a new SeriesInstanceUID and SOPInstanceUIDs, SeriesDescription and
    DerivationDescription saying what was done and by which model, ImageType
    DERIVED and SECONDARY, a SourceImageSequence pointing at the original instance, and
    the provenance JSON in a private element (group 0x0071, creator
    ``napari-clipdenoise``). Lossless compressed inputs are re-compressed with the
    same transfer syntax when pydicom has an encoder for it; others (and lossy ones)
    are written as Explicit VR Little Endian, with a note.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import IN_MEMORY_BYTES, ImageSource, MissingExtraError, OutputSink, UnreadableImageError
from .provenance import to_json

EXTRA = "ct"
#: Private block holding the provenance JSON.
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "napari-clipdenoise"
PROVENANCE_ELEMENT = 0x01
#: Transfer syntaxes whose pixels are not compressed.
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
#: Lossless compressed syntaxes an output may be re-compressed with.
_LOSSLESS = {
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
}
#: What to install to decode a compressed transfer syntax (by UID prefix).
_DECODERS = (
    ("1.2.840.10008.1.2.4.8", "pyjpegls (or pylibjpeg with pylibjpeg-libjpeg)"),  # JPEG-LS
    ("1.2.840.10008.1.2.4.9", "pylibjpeg with pylibjpeg-openjpeg"),  # JPEG 2000
    ("1.2.840.10008.1.2.4.20", "pylibjpeg with pylibjpeg-openjpeg"),  # HTJ2K
    ("1.2.840.10008.1.2.4.", "pylibjpeg with pylibjpeg-libjpeg"),  # JPEG baseline, extended, lossless
)
_IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".nii", ".gz", ".zarr", ".btf", ".tf8"}


def require_pydicom():
    """The pydicom module, or MissingExtraError naming the extra to install."""
    try:
        import pydicom
    except ImportError:
        raise MissingExtraError("reading and writing DICOM", "pydicom", EXTRA) from None
    return pydicom


# ------------------------------------------------------------------ detection
def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (the ``DICM`` marker after the 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dicom_files(folder: Path) -> list[Path]:
    """The visible DICOM files of a folder (not DICOMDIR, not in subfolders), sorted by name."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        p
        for p in entries
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR" and is_dicom_file(p)
    ]


def is_dicom_dir(path: Path) -> bool:
    """A folder holding DICOM files and no image files of the other supported formats (a series folder)."""
    if not path.is_dir():
        return False
    try:
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    except OSError:
        return False
    if any(p.suffix.lower() in _IMAGE_SUFFIXES for p in entries):
        return False
    return any(p.is_file() and is_dicom_file(p) for p in entries)


# ------------------------------------------------------------------ reading
@dataclass
class DicomSeries:
    """One series as read: files, order, geometry and how stored values map to the data's values."""

    files: list[Path]  # one per slice in Z order; a multi-frame series has one file
    frames: list[int | None]  # the frame in its file of each slice (None: single-frame files)
    slopes: list[float]
    intercepts: list[float]
    rows: int
    columns: int
    spacing: tuple[float, float, float]  # Z, Y, X in mm
    origin: tuple[float, float, float]  # patient coordinates (x, y, z) of the first slice's first pixel
    orientation: tuple[float, ...]  # ImageOrientationPatient (row direction, column direction)
    modality: str
    series_uid: str
    description: str
    transfer_syntax: str
    stored_dtype: np.dtype
    bits_stored: int
    padding_value: int | None
    multiframe: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.files) if not self.multiframe else len(self.frames)

    @property
    def units(self) -> str | None:
        return "HU" if self.modality == "CT" else None

    def stored_range(self) -> tuple[int, int]:
        if self.stored_dtype.kind == "i":
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1

    def geometry(self) -> dict:
        """Spacing, origin, orientation and the napari-style translate (Z, Y, X along the slice axes), in mm."""
        row_dir, col_dir = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        normal = np.cross(row_dir, col_dir)
        origin = np.array(self.origin)
        translate = (float(origin @ normal), float(origin @ col_dir), float(origin @ row_dir))
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "orientation": list(self.orientation),
            "translate": list(translate),
            "unit": "mm",
        }


def _decoder_hint(syntax) -> str:
    for prefix, packages in _DECODERS:
        if str(syntax).startswith(prefix):
            return packages
    return "pylibjpeg with its plugins, or python-gdcm"


def decode(path: Path, frame: int | None, syntax: str) -> np.ndarray:
    """The stored values of one slice (a 2D array), with an error naming a decoder package when one is missing."""
    require_pydicom()
    from pydicom.pixels import pixel_array

    try:
        return np.asarray(pixel_array(str(path), index=frame))
    except Exception as exc:  # noqa: BLE001 - pydicom raises RuntimeError/ValueError/NotImplementedError
        if str(syntax) not in _NATIVE:
            from pydicom.uid import UID

            name = UID(str(syntax)).name
            raise UnreadableImageError(
                f"{path.name}: its pixels are compressed as {name} and no installed decoder reads them; install"
                f' {_decoder_hint(syntax)} (pip install "napari-clipdenoise[ct-codecs]" installs the decoders).'
                f" pydicom said: {str(exc).splitlines()[0]}"
            ) from exc
        raise UnreadableImageError(
            f"{path.name}: DICOM pixel data cannot be read ({type(exc).__name__}: {exc})"
        ) from exc


def _floats(value, count: int, default) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return default
    return values if len(values) == count else default


def _functional(ds, frame: int, sequence: str, keyword: str):
    """A value from the frame's functional groups, else the shared ones, else the top level (or None)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is not None and len(items) > index:
            inner = items[index].get(sequence)
            if inner is not None and len(inner) and keyword in inner[0]:
                return inner[0].get(keyword)
    return ds.get(keyword)


def _header(path: Path):
    pydicom = require_pydicom()
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom's InvalidDicomError and friends
        raise UnreadableImageError(f"{path.name}: not a readable DICOM file ({type(exc).__name__}: {exc})") from exc


def _pixel_format(ds, path: Path) -> tuple[np.dtype, int]:
    if "PixelData" not in ds and "FloatPixelData" not in ds and ds.get("Rows") is None:
        raise UnreadableImageError(f"{path.name}: the DICOM file holds no image (no Pixel Data)")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise UnreadableImageError(
            f"{path.name}: colour DICOM ({ds.get('PhotometricInterpretation')}) is not supported; CT and other"
            " grayscale series are"
        )
    bits = int(ds.get("BitsAllocated", 16))
    if bits not in (8, 16, 32):
        raise UnreadableImageError(f"{path.name}: {bits}-bit DICOM pixels are not supported (8, 16 or 32)")
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}"), int(ds.get("BitsStored", bits))


def _rescale(ds, frame: int | None = None) -> tuple[float, float]:
    slope = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleSlope") if frame is not None else None
    intercept = (
        _functional(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept") if frame is not None else None
    )
    slope = ds.get("RescaleSlope", 1.0) if slope is None else slope
    intercept = ds.get("RescaleIntercept", 0.0) if intercept is None else intercept
    slope = float(slope) if slope not in (None, "") else 1.0
    return (slope if slope != 0 else 1.0), float(intercept) if intercept not in (None, "") else 0.0


def _sorted_by_position(positions, orientation, instances, names, notes) -> tuple[list[int], float | None]:
    """Slice order along the normal and the spacing between slices (None when positions are missing)."""
    if all(p is not None for p in positions) and orientation is not None:
        normal = np.cross(np.array(orientation[:3]), np.array(orientation[3:]))
        along = np.array([np.array(p) @ normal for p in positions])
        order = sorted(range(len(along)), key=lambda i: along[i])
        steps = np.diff(along[order])
        if len(steps) and np.min(steps) < 1e-4:
            i = int(np.argmin(steps))
            raise UnreadableImageError(
                f"slices {names[order[i]]} and {names[order[i + 1]]} lie at the same position; the folder may hold"
                " two acquisitions of one series: put each in its own folder"
            )
        if len(steps) == 0:
            return order, None
        spacing = float(np.median(steps))
        if np.max(np.abs(steps - spacing)) > max(0.01 * spacing, 1e-3):
            notes.append(
                f"the slice spacing is not uniform ({np.min(steps):.4g}-{np.max(steps):.4g} mm); the volume is"
                f" treated as evenly spaced at {spacing:.4g} mm"
            )
        return order, spacing
    notes.append("slices have no ImagePositionPatient: ordered by InstanceNumber")
    return sorted(range(len(instances)), key=lambda i: (instances[i], names[i])), None


def read_series(paths) -> DicomSeries:
    """Read the headers of a series: a folder, one file (single- or multi-frame) or a list of files."""
    require_pydicom()
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        files = dicom_files(path) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise UnreadableImageError(f"{path} holds no DICOM files")
    else:
        files = [Path(p) for p in paths]
    if not files:
        raise UnreadableImageError("no DICOM files given")
    headers = [_header(p) for p in files]
    by_series: dict[str, list[int]] = {}
    for i, ds in enumerate(headers):
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(i)
    if len(by_series) > 1:
        listing = "; ".join(
            f"{uid or '(no UID)'} '{headers[idx[0]].get('SeriesDescription', '')}' ({len(idx)} files)"
            for uid, idx in by_series.items()
        )
        raise UnreadableImageError(
            f"the files belong to {len(by_series)} DICOM series ({listing}); put each series in its own folder"
        )
    first = headers[0]
    stored_dtype, bits_stored = _pixel_format(first, files[0])
    syntax = str(first.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    padding = first.get("PixelPaddingValue")
    notes: list[str] = []
    frames_in_file = int(first.get("NumberOfFrames", 1) or 1)
    if len(files) == 1 and frames_in_file > 1:
        return _multiframe(files[0], first, stored_dtype, bits_stored, syntax, padding, notes)
    if frames_in_file > 1:
        raise UnreadableImageError(
            f"{files[0].name} is a {frames_in_file}-frame file among {len(files)} files; give multi-frame files one"
            " at a time"
        )
    rows, columns = int(first.Rows), int(first.Columns)
    for path, ds in zip(files, headers, strict=True):
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
            raise UnreadableImageError(
                f"{path.name} is {ds.Rows} x {ds.Columns} pixels but {files[0].name} is {rows} x {columns}:"
                " the slices of a series must have one size"
            )
        if _pixel_format(ds, path) != (stored_dtype, bits_stored):
            raise UnreadableImageError(f"{path.name} has another pixel representation than {files[0].name}")
    orientation = _floats(first.get("ImageOrientationPatient"), 6, None)
    positions = [_floats(ds.get("ImagePositionPatient"), 3, None) for ds in headers]
    instances = [int(ds.get("InstanceNumber", 0) or 0) for ds in headers]
    order, spacing_z = _sorted_by_position(positions, orientation, instances, [p.name for p in files], notes)
    if spacing_z is None:
        spacing_z = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    pixel = _floats(first.get("PixelSpacing"), 2, (1.0, 1.0))
    scales = [_rescale(headers[i]) for i in order]
    origin = positions[order[0]] or (0.0, 0.0, 0.0)
    return DicomSeries(
        files=[files[i] for i in order],
        frames=[None] * len(files),
        slopes=[s for s, _ in scales],
        intercepts=[b for _, b in scales],
        rows=rows,
        columns=columns,
        spacing=(spacing_z, pixel[0], pixel[1]),
        origin=tuple(origin),
        orientation=orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        modality=str(first.get("Modality", "")),
        series_uid=str(first.get("SeriesInstanceUID", "")),
        description=str(first.get("SeriesDescription", "")),
        transfer_syntax=syntax,
        stored_dtype=stored_dtype,
        bits_stored=bits_stored,
        padding_value=None if padding is None else int(padding),
        notes=notes,
    )


def _multiframe(path: Path, ds, stored_dtype, bits_stored, syntax, padding, notes) -> DicomSeries:
    count = int(ds.NumberOfFrames)
    orientation = _floats(_functional(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient"), 6, None)
    positions = [
        _floats(_functional(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3, None) for i in range(count)
    ]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") is not None
    if not per_frame or len({p for p in positions}) < count:  # one position for all frames: step along the normal
        step = float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0)
        start = np.array(positions[0] or (0.0, 0.0, 0.0))
        normal = np.cross(
            np.array((orientation or (1, 0, 0, 0, 1, 0))[:3]), np.array((orientation or (1, 0, 0, 0, 1, 0))[3:])
        )
        positions = [tuple(start + i * step * normal) for i in range(count)]
    order, spacing_z = _sorted_by_position(
        positions, orientation or (1, 0, 0, 0, 1, 0), list(range(count)), [f"frame {i}" for i in range(count)], notes
    )
    pixel = _floats(_functional(ds, 0, "PixelMeasuresSequence", "PixelSpacing"), 2, (1.0, 1.0))
    scales = [_rescale(ds, i) for i in order]
    return DicomSeries(
        files=[path],
        frames=list(order),
        slopes=[s for s, _ in scales],
        intercepts=[b for _, b in scales],
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        spacing=(spacing_z or 1.0, pixel[0], pixel[1]),
        origin=tuple(positions[order[0]]),
        orientation=orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        modality=str(ds.get("Modality", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        description=str(ds.get("SeriesDescription", "")),
        transfer_syntax=syntax,
        stored_dtype=stored_dtype,
        bits_stored=bits_stored,
        padding_value=None if padding is None else int(padding),
        multiframe=True,
        notes=notes,
    )


class DicomVolume:
    """A series as a lazy ``Z x Y x X`` float32 array: indexing decodes only the slices it touches."""

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, series: DicomSeries):
        self.series = series
        self.shape = (series.depth, series.rows, series.columns)
        self._cache: dict[int, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def slice(self, z: int) -> np.ndarray:
        """Slice ``z`` in the data's values (stored * slope + intercept), float32."""
        if z in self._cache:
            return self._cache[z]
        series = self.series
        path = series.files[0] if series.multiframe else series.files[z]
        stored = decode(path, series.frames[z], series.transfer_syntax)
        if stored.shape != (series.rows, series.columns):
            raise UnreadableImageError(
                f"{path.name}: decoded {stored.shape} pixels, expected {series.rows} x {series.columns}"
            )
        values = stored.astype(np.float32) * np.float32(series.slopes[z]) + np.float32(series.intercepts[z])
        if len(self._cache) >= 2:
            self._cache.pop(next(iter(self._cache)))
        self._cache[z] = values
        return values

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        zkey, rest = key[0], key[1:]
        if isinstance(zkey, (int, np.integer)):
            return self.slice(int(zkey) % self.shape[0])[rest]
        indices = range(self.shape[0])[zkey]
        return np.stack([self.slice(z)[rest] for z in indices]) if len(indices) else np.empty((0,), np.float32)

    def __array__(self, dtype=None, copy=None):
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def read_dicom(path) -> ImageSource:
    """Open a series folder, a DICOM file or a list of files as an :class:`~.base.ImageSource`."""
    path = Path(path) if isinstance(path, str) else path
    series = read_series(path)
    volume = DicomVolume(series)
    volume.slice(0)  # decode one slice now: a missing decoder or corrupt pixels fail before any work
    single = not series.multiframe and len(series.files) == 1 and not (isinstance(path, Path) and path.is_dir())
    notes = list(series.notes)
    kind = "CT" if series.modality == "CT" else series.modality or "DICOM"
    notes.append(
        f"{kind} {'image' if single else 'series'} of {series.depth} slice(s), values = stored * RescaleSlope +"
        f" RescaleIntercept{' (HU)' if series.units else ''}"
    )
    if single:
        data, axes = volume.slice(0), "YX"
    elif volume.nbytes <= IN_MEMORY_BYTES:
        data, axes = np.stack([volume.slice(z) for z in range(series.depth)]), "ZYX"
    else:
        data, axes = volume, "ZYX"
        notes.append("read lazily (slice by slice)")
    where = Path(path) if isinstance(path, (str, Path)) else Path(path[0]).parent
    info = {"dicom": series, "geometry": series.geometry(), "modality": series.modality}
    return ImageSource(where, "dicom", data, axes, "DICOM geometry", info, notes, units=series.units)


# ------------------------------------------------------------------ writing
def _clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def derivation_text(provenance: dict) -> str:
    """What was done and by which model, for DerivationDescription (at most 1024 characters)."""
    model = provenance.get("model", {})
    parameters = provenance.get("parameters", {})
    ranges = parameters.get("intensity_ranges") or []
    scale = ", ".join(f"[{r['low']:g}, {r['high']:g}]" for r in ranges)
    sha = model.get("sha256") or model.get("weights_sha256") or ""
    parts = [
        f"Denoised by napari-clipdenoise {provenance.get('version', '')} ({provenance.get('method', 'CLIP denoiser')})",
        f"model {model.get('name', '?')}" + (f" (weights sha256 {sha[:16]})" if sha else ""),
        f"intensity range {scale}" + (f" {parameters['units']}" if parameters.get("units") else ""),
        f"planes {parameters.get('planes', 'xy')}",
    ]
    return _clip_text(", ".join(parts), 1024)


class DicomSink(OutputSink):
    """The denoised series: each slice encoded and written as the core finishes it (or all at the end)."""

    embeds_provenance = True

    def __init__(self, temporary: Path, source: ImageSource, shape, dtype, provenance: dict):
        require_pydicom()
        from pydicom.uid import generate_uid

        self.temporary = temporary
        self.series: DicomSeries = source.info["dicom"]
        self.shape = tuple(shape)
        self.provenance = provenance
        self.series_uid = generate_uid()
        self.notes: list[str] = []
        self.clipped = 0
        self._written: set[int] = set()
        self.folder = source.path.is_dir()
        if self.folder:
            temporary.mkdir()
            self.array = _SliceWriter(self, self.shape, dtype)
        else:
            self.array = None

    # one slice of a series folder
    def write_slice(self, z: int, values: np.ndarray) -> None:
        path = self.series.files[z]
        self._save(path, self._encode(values, z, path, None), self.temporary / path.name)
        self._written.add(z)

    def finish(self, result) -> None:
        if self.folder:
            missing = sorted(set(range(self.series.depth)) - self._written)
            if missing and result is not None and isinstance(result, np.ndarray):
                for z in missing:
                    self.write_slice(z, result[z])
            elif missing:
                raise RuntimeError(f"slices {missing[:5]} of the series were never written")
        else:
            values = np.asarray(result, dtype=np.float32)
            path = self.series.files[0]
            if not self.series.multiframe:
                self._save(
                    path,
                    self._encode(values.reshape(self.series.rows, self.series.columns), 0, path, None),
                    self.temporary,
                )
            else:
                frames = np.empty((self.series.depth, self.series.rows, self.series.columns), self.series.stored_dtype)
                for z, frame in enumerate(self.series.frames):
                    frames[frame] = self._encode(values[z], z, path, frame)
                self._save(path, frames, self.temporary)
        if self.clipped:
            low, high = self.series.stored_range()
            self.notes.append(f"{self.clipped} pixel(s) beyond the stored range [{low}, {high}] were clipped to it")

    def _encode(self, values: np.ndarray, z: int, path: Path, frame: int | None) -> np.ndarray:
        """Data values -> stored values through this slice's slope and intercept, clipped to the bits stored."""
        series = self.series
        stored = np.rint((np.asarray(values, np.float64) - series.intercepts[z]) / series.slopes[z])
        low, high = series.stored_range()
        self.clipped += int(np.count_nonzero((stored < low) | (stored > high)))
        stored = np.clip(stored, low, high).astype(series.stored_dtype)
        if series.padding_value is not None:  # padding (outside the scan) stays padding
            original = decode(path, frame if series.multiframe else None, series.transfer_syntax)
            pad = original == series.padding_value
            stored[pad] = original[pad]
        return stored

    def _save(self, source_path: Path, stored: np.ndarray, target: Path) -> None:
        pydicom = require_pydicom()
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid

        ds = pydicom.dcmread(str(source_path))
        original_sop, sop_class = str(ds.get("SOPInstanceUID", "")), ds.get("SOPClassUID")
        syntax = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
        if syntax not in _NATIVE or syntax == "1.2.840.10008.1.2.2":  # compressed or big endian: write natively
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if stored.dtype.itemsize <= 2:
            ds.set_pixel_data(stored, photometric, self.series.bits_stored, generate_instance_uid=False)
        else:
            ds.PixelData = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes()
            ds["PixelData"].VR = "OW"
            ds["PixelData"].is_undefined_length = False
        for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if keyword in ds:
                delattr(ds, keyword)
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SeriesInstanceUID = self.series_uid
        model = self.provenance.get("model", {}).get("name", "model")
        suffix = f" denoised ({model})"
        ds.SeriesDescription = _clip_text(
            (self.series.description or "series")[: max(0, 64 - len(suffix))] + suffix, 64
        )
        ds.DerivationDescription = derivation_text(self.provenance)
        image_type = list(ds.get("ImageType") or ["ORIGINAL", "PRIMARY"])
        ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
        now = _dt.datetime.now()
        ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        if sop_class is not None and original_sop:
            item = pydicom.Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = original_sop
            ds.SourceImageSequence = pydicom.Sequence([item])
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(PROVENANCE_ELEMENT, "UT", to_json(self.provenance))
        if syntax in _LOSSLESS:
            try:
                ds.compress(syntax, generate_instance_uid=False)
            except Exception as exc:  # noqa: BLE001 - no encoder installed for it
                note = f"written uncompressed (no encoder for the input's {syntax}: {str(exc).splitlines()[0]})"
                if note not in self.notes:
                    self.notes.append(note)
        elif syntax not in _NATIVE:
            note = "the input was lossy-compressed; the output is written uncompressed (Explicit VR Little Endian)"
            if note not in self.notes:
                self.notes.append(note)
        ds.save_as(str(target), enforce_file_format=True)


class _SliceWriter:
    """The array-like the core writes a series folder into: each ``[z, :, :] = plane`` writes one file."""

    ndim = 3

    def __init__(self, sink: DicomSink, shape, dtype):
        self.sink, self.shape, self.dtype = sink, tuple(shape), np.dtype(dtype)

    def __setitem__(self, key, value) -> None:
        key = key if isinstance(key, tuple) else (key,)
        full = all(k == slice(None) for k in key[1:])
        if not (isinstance(key[0], (int, np.integer)) and full and len(key) <= 3):
            raise ValueError(f"a DICOM series is written one whole slice at a time, not at {key!r}")
        self.sink.write_slice(int(key[0]), np.asarray(value))


def read_provenance(path: Path) -> dict | None:
    """The provenance stored by :class:`DicomSink` in an output file (the first file of an output folder)."""
    pydicom = require_pydicom()
    path = Path(path)
    files = dicom_files(path) if path.is_dir() else [path]
    if not files:
        return None
    ds = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        return None
    try:
        element = block[PROVENANCE_ELEMENT]
    except KeyError:
        return None
    return json.loads(element.value)
