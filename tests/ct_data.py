"""Real CT files for the tests: a multi-slice DICOM series built from pydicom's CT_small.dcm, NIfTI volumes.

``CT_small.dcm`` (a 128 x 128 GE CT slice, int16, RescaleIntercept -1024, spacing
0.66 mm, in pydicom's installed test data) is the real file; the series copies its
header with new UIDs, positions 5 mm apart and seeded noise, written under
shuffled file names so the reader has to order the slices by position.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")


def ct_small_path() -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")  # shipped in pydicom's wheel: found locally, never downloaded
    if path is None:
        pytest.skip("pydicom's CT_small.dcm test file is not installed")
    return Path(path)


def write_series(
    folder: Path,
    slices: int = 5,
    *,
    spacing: float = 5.0,
    seed: int = 0,
    slope: float = 1.0,
    intercept: float = -1024.0,
    syntax=None,
    shuffle: bool = True,
) -> dict:
    """Write a CT series; return {"names": file names in position order, "hu": Z x Y x X float HU, ...}."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(ct_small_path())
    hu_base = base.pixel_array.astype(np.float64) * float(base.RescaleSlope) + float(base.RescaleIntercept)
    rng = np.random.default_rng(seed)
    series_uid = generate_uid()
    order = rng.permutation(slices) if shuffle else np.arange(slices)
    names, volume = [], []
    for k in range(slices):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = "test series"
        position = [float(v) for v in base.ImagePositionPatient]
        position[2] -= spacing * k  # feet first: z decreases with the instance number
        ds.ImagePositionPatient = position
        ds.SliceLocation = position[2]
        ds.SliceThickness = spacing
        ds.SpacingBetweenSlices = spacing
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        hu = hu_base + rng.normal(0.0, 25.0, hu_base.shape)
        stored = np.clip(np.rint((hu - intercept) / slope), -32768, 32767).astype(np.int16)
        ds.PixelData = stored.tobytes()
        if syntax is not None:
            ds.compress(syntax, generate_instance_uid=False)
        name = f"IM{int(order[k]):04d}"
        ds.save_as(folder / name, enforce_file_format=True)
        names.append(name)
        volume.append(stored.astype(np.float64) * slope + intercept)
    # position order: ascending z along the normal (0, 0, 1), i.e. the last instance first
    z_order = list(reversed(range(slices)))
    return {
        "names": [names[k] for k in z_order],
        "hu": np.stack([volume[k] for k in z_order]).astype(np.float32),
        "uid": series_uid,
        "spacing": (spacing, float(base.PixelSpacing[0]), float(base.PixelSpacing[1])),
    }


def write_multiframe(path: Path, frames: int = 4, *, seed: int = 0) -> np.ndarray:
    """An enhanced-style multi-frame CT file whose frames are stored in reverse position order; returns HU (Z order)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    base = pydicom.dcmread(ct_small_path())
    ds = copy.deepcopy(base)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    rng = np.random.default_rng(seed)
    stored = np.stack([base.pixel_array + rng.integers(-30, 30, base.pixel_array.shape) for _ in range(frames)])
    stored = stored.astype(np.int16)
    ds.NumberOfFrames = frames
    ds.PixelData = stored.tobytes()
    origin = [float(v) for v in base.ImagePositionPatient]
    per_frame = []
    for i in range(frames):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [origin[0], origin[1], origin[2] - 2.0 * i]  # stored top to bottom
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    shared = Dataset()
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = list(base.PixelSpacing)
    measures.SliceThickness = 2.0
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, -1024, "HU"
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.save_as(path, enforce_file_format=True)
    return (stored[::-1].astype(np.float32) - 1024.0).copy()


def write_nifti(path: Path, *, shape=(40, 36, 6), seed: int = 0, scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like NIfTI volume (i, j, k), int16 with scl_slope 0.5 / scl_inter -1000; returns (HU in Z,Y,X, affine)."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-300.0, 400.0, shape)
    hu[:4] = -1000.0  # air
    affine = np.array([[-0.7, 0, 0, 12.0], [0, 0.8, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1.0]])
    if scaled:
        stored = np.rint((hu + 1000.0) / 0.5).astype(np.int16)
        image = nibabel.Nifti1Image(stored, affine)
        image.header.set_slope_inter(0.5, -1000.0)
        values = stored.astype(np.float32) * 0.5 - 1000.0
    else:
        values = hu.astype(np.float32)
        image = nibabel.Nifti1Image(values, affine)
    image.header["descrip"] = b"ct test volume"
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=2)
    nibabel.save(image, str(path))
    return np.transpose(values, (2, 1, 0)).copy(), affine
