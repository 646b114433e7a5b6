"""DICOM series and NIfTI volumes: read on their geometry, written back as derived series / the same header.

The acceptance runs are real ``clipdenoise`` subprocesses on real files: a series
built from pydicom's CT_small.dcm, that file itself, and a NIfTI volume. The model
is a seeded random-weight 1-channel checkpoint installed as ``ldct`` (outputs are
not denoised images; the tests check formats, geometry, UIDs and the intensity scale).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ct_data import ct_small_path, nibabel, pydicom, write_multiframe, write_nifti, write_series

from napari_clipdenoise.formats import format_of, open_source, read_provenance
from napari_clipdenoise.formats.base import UnreadableImageError

CLI = [sys.executable, "-m", "napari_clipdenoise.cli"]
FAST = ["--tile-size", "none", "--precision", "fp32", "--device", "cpu"]
GEOMETRY_TAGS = (
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
    "SpacingBetweenSlices",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PhotometricInterpretation",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "PatientID",
)


def run(args, timeout=240):
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture
def installed_ldct(isolated_model_cache, gray_checkpoint):
    """The registry name 'ldct' installed with random 1-channel weights (its registry entry says HU)."""
    from napari_clipdenoise import install_model

    return install_model(gray_checkpoint, "ldct")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading
def test_a_series_folder_is_one_image_ordered_by_position_in_hu(tmp_path):
    made = write_series(tmp_path / "series", 5, seed=3)
    assert format_of(tmp_path / "series") == "dicom"
    source = open_source(tmp_path / "series")
    assert source.kind == "dicom" and source.axes == "ZYX" and source.units == "HU"
    assert source.shape == (5, 128, 128) and source.dtype == np.float32
    assert [p.name for p in source.info["dicom"].files] == made["names"]
    np.testing.assert_array_equal(np.asarray(source.data), made["hu"])
    geometry = source.info["geometry"]
    np.testing.assert_allclose(geometry["spacing"], made["spacing"])
    first = pydicom.dcmread(tmp_path / "series" / made["names"][0])
    np.testing.assert_allclose(geometry["origin"], [float(v) for v in first.ImagePositionPatient])
    assert geometry["orientation"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_lazy_series_reads_slice_by_slice(tmp_path, monkeypatch, gray_model, one_torch_thread):
    from napari_clipdenoise import denoise
    from napari_clipdenoise.formats import dicom

    made = write_series(tmp_path / "series", 3, seed=1)
    monkeypatch.setattr(dicom, "IN_MEMORY_BYTES", 1000)
    source = open_source(tmp_path / "series")
    assert isinstance(source.data, dicom.DicomVolume)
    np.testing.assert_array_equal(source.data[2], made["hu"][2])
    np.testing.assert_array_equal(source.data[1:3, 5:9, ::7], made["hu"][1:3, 5:9, ::7])
    np.testing.assert_array_equal(np.asarray(source.data), made["hu"])
    options = {"axes": "ZYX", "units": "HU", "tile_size": None, "precision": "fp32", "device": "cpu"}
    lazy = denoise(source.data, gray_model, **options)  # sampled and read slice by slice
    np.testing.assert_array_equal(lazy, denoise(made["hu"], gray_model, **options))


def test_two_series_or_duplicate_positions_in_one_folder_are_refused(tmp_path):
    write_series(tmp_path / "mixed", 2, seed=1)
    other = write_series(tmp_path / "other", 2, seed=2)
    (tmp_path / "other" / other["names"][0]).rename(tmp_path / "mixed" / "EXTRA")
    with pytest.raises(UnreadableImageError, match="2 DICOM series"):
        open_source(tmp_path / "mixed")
    twice = write_series(tmp_path / "twice", 2, seed=1, spacing=0.0)
    with pytest.raises(UnreadableImageError, match="same position"):
        open_source(tmp_path / "twice")
    assert twice["names"]


def test_multiframe_file_is_read_in_position_order_and_written_back_in_file_order(tmp_path, gray_model):
    from napari_clipdenoise.batch.discovery import Job
    from napari_clipdenoise.batch.runner import BatchSettings, process_job
    from napari_clipdenoise.inference.options import InferenceOptions

    path = tmp_path / "multi.dcm"
    hu = write_multiframe(path, 4)
    source = open_source(path)
    assert source.shape == (4, 128, 128) and source.axes == "ZYX" and source.units == "HU"
    np.testing.assert_array_equal(np.asarray(source.data), hu)
    assert source.info["dicom"].frames == [3, 2, 1, 0]
    np.testing.assert_allclose(source.info["geometry"]["spacing"][0], 2.0)

    class Quiet:
        def message(self, text):
            pass

        error = message

        def tiles_done(self, done, total):
            pass

    output = tmp_path / "multi_denoised.dcm"
    options = InferenceOptions(tile_size=None, precision="fp32", device="cpu")
    record = process_job(Job(path, output), gray_model, BatchSettings(options, "gray"), {"name": "gray"}, Quiet())
    assert record.status == "done", record.error
    out = pydicom.dcmread(output)
    assert int(out.NumberOfFrames) == 4 and out.SeriesInstanceUID != pydicom.dcmread(path).SeriesInstanceUID
    original = pydicom.dcmread(path)
    for i in range(4):
        a = original.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient
        b = out.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient
        assert list(a) == list(b)
    again = open_source(output)
    assert again.info["dicom"].frames == [3, 2, 1, 0]  # the same frame order in the file


def test_a_compressed_series_round_trips_and_a_missing_decoder_names_the_package(tmp_path, gray_model):
    from pydicom.uid import RLELossless

    from napari_clipdenoise.batch.discovery import Job
    from napari_clipdenoise.batch.runner import BatchSettings, process_job
    from napari_clipdenoise.inference.options import InferenceOptions

    made = write_series(tmp_path / "rle", 3, seed=4, syntax=RLELossless)  # pydicom decodes and encodes RLE itself
    source = open_source(tmp_path / "rle")
    np.testing.assert_array_equal(np.asarray(source.data), made["hu"])

    class Quiet:
        def message(self, text):
            pass

        error = message

        def tiles_done(self, done, total):
            pass

    options = InferenceOptions(tile_size=None, precision="fp32", device="cpu")
    job = Job(tmp_path / "rle", tmp_path / "rle_denoised")
    record = process_job(job, gray_model, BatchSettings(options, "gray"), {"name": "gray"}, Quiet())
    assert record.status == "done", record.error
    written = pydicom.dcmread(tmp_path / "rle_denoised" / made["names"][0])
    assert written.file_meta.TransferSyntaxUID == RLELossless  # re-compressed with the input's syntax
    assert written.pixel_array.shape == (128, 128)

    from pydicom.data import get_testdata_file

    jpeg_ls = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    try:
        import jpeg_ls as _  # noqa: F401 - pyjpegls installed: nothing is missing here
    except ImportError:
        pass
    else:
        pytest.skip("a JPEG-LS decoder is installed")
    if jpeg_ls is None:
        pytest.skip("pydicom's JPEG-LS test file is not installed")
    with pytest.raises(UnreadableImageError, match=r"JPEG-LS.*pyjpegls.*napari-clipdenoise\[ct-codecs\]"):
        open_source(Path(jpeg_ls))


def test_nifti_reads_reversed_axes_in_hu_and_writes_the_same_header(tmp_path, gray_model):
    path = tmp_path / "vol.nii.gz"
    hu, affine = write_nifti(path)
    assert format_of(path) == "nifti"
    source = open_source(path)
    assert source.axes == "ZYX" and source.shape == (6, 36, 40) and source.units == "HU"
    np.testing.assert_allclose(np.asarray(source.data), hu)
    np.testing.assert_allclose(source.info["geometry"]["spacing"], [2.5, 0.8, 0.7])


# ---------------------------------------------------------------- command-line round trips
def test_dicom_series_round_trips_through_the_cli_with_the_models_scale(tmp_path, installed_ldct):
    made = write_series(tmp_path / "series", 5, seed=7)
    before = digest(tmp_path / "series")
    done = run(["denoise", tmp_path / "series", "-m", "ldct", *FAST, "--report", tmp_path / "run.json"])
    assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "series") == before  # the input is untouched
    out_folder = tmp_path / "series_denoised"
    assert sorted(p.name for p in out_folder.iterdir()) == sorted(made["names"])

    inputs = {n: pydicom.dcmread(tmp_path / "series" / n) for n in made["names"]}
    outputs = {n: pydicom.dcmread(out_folder / n) for n in made["names"]}
    series_uids = {str(ds.SeriesInstanceUID) for ds in outputs.values()}
    assert len(series_uids) == 1 and series_uids.isdisjoint({str(ds.SeriesInstanceUID) for ds in inputs.values()})
    sops = [str(ds.SOPInstanceUID) for ds in outputs.values()]
    assert len(set(sops)) == 5 and set(sops).isdisjoint(str(ds.SOPInstanceUID) for ds in inputs.values())
    result_hu = []
    for name in made["names"]:
        a, b = inputs[name], outputs[name]
        for tag in GEOMETRY_TAGS:
            assert a.get(tag) == b.get(tag), tag
        assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
        assert list(b.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "denoised" in b.SeriesDescription and "ldct" in b.SeriesDescription
        assert "ldct" in b.DerivationDescription and "[-1024, 3072] HU" in b.DerivationDescription
        assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
        assert b.pixel_array.dtype == np.int16 and b.pixel_array.shape == (128, 128)
        result_hu.append(b.pixel_array * float(b.RescaleSlope) + float(b.RescaleIntercept))

    # the same as denoise() of the volume in HU on the ldct scale, re-encoded through the intercept
    from napari_clipdenoise import denoise, load_model

    expected = denoise(made["hu"], load_model("ldct"), axes="ZYX", units="HU", tile_size=None, precision="fp32")
    assert np.abs(np.stack(result_hu) - expected).max() <= 0.5 + 1e-3

    report = json.loads((tmp_path / "run.json").read_text())
    ranges = report["files"][0]["intensity_ranges"]
    assert ranges == [{"channels": [0], "low": -1024.0, "high": 3072.0, "rule": "model input scale (HU)"}]
    provenance = read_provenance(out_folder)
    assert provenance["parameters"]["intensity_ranges"] == ranges
    assert provenance["parameters"]["units"] == "HU" and provenance["parameters"]["intensity_range"] == "auto"
    assert provenance["model"]["input_scale"]["unit"] == "HU"

    rerun = run(["denoise", tmp_path / "series", "-m", "ldct", *FAST])  # the output is found: skipped
    assert rerun.returncode == 0 and "skipped" in rerun.stderr


def test_single_ct_slice_round_trips_through_the_cli(tmp_path, installed_ldct):
    import shutil

    path = tmp_path / "CT_small.dcm"
    shutil.copy(ct_small_path(), path)
    done = run(["denoise", path, "-m", "ldct", *FAST])
    assert done.returncode == 0, done.stderr
    a, b = pydicom.dcmread(path), pydicom.dcmread(tmp_path / "CT_small_denoised.dcm")
    for tag in GEOMETRY_TAGS:
        assert a.get(tag) == b.get(tag), tag
    assert b.SeriesInstanceUID != a.SeriesInstanceUID and b.SOPInstanceUID != a.SOPInstanceUID
    assert b.ImageType[0] == "DERIVED" and b.PixelPaddingValue == a.PixelPaddingValue
    assert b.pixel_array.shape == a.pixel_array.shape and b.pixel_array.dtype == a.pixel_array.dtype
    assert read_provenance(tmp_path / "CT_small_denoised.dcm")["parameters"]["intensity_ranges"][0]["low"] == -1024.0


def test_nifti_round_trips_through_the_cli_with_its_affine_and_header(tmp_path, installed_ldct):
    path = tmp_path / "vol.nii.gz"
    hu, affine = write_nifti(path)
    done = run(["denoise", path, "-m", "ldct", *FAST, "--planes", "ortho"])
    assert done.returncode == 0, done.stderr
    a, b = nibabel.load(path), nibabel.load(tmp_path / "vol_denoised.nii.gz")
    np.testing.assert_allclose(b.affine, a.affine)
    assert b.shape == a.shape and b.get_data_dtype() == a.get_data_dtype()
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "descrip", "dim"):
        np.testing.assert_array_equal(b.header[key], a.header[key])
    assert (b.dataobj.slope, b.dataobj.inter) == (0.5, -1000.0)
    provenance = read_provenance(tmp_path / "vol_denoised.nii.gz")
    assert provenance["parameters"]["planes"] == "ortho"
    assert provenance["parameters"]["intensity_ranges"][0]["low"] == -1024.0


def test_a_tiff_in_hu_needs_units_and_warns_without_them(tmp_path, installed_ldct):
    import tifffile

    made = write_series(tmp_path / "series", 2, seed=2)
    tifffile.imwrite(tmp_path / "ct_hu.tif", made["hu"])
    quiet = run(["denoise", tmp_path / "ct_hu.tif", "-m", "ldct", *FAST, "-q", "--report", tmp_path / "a.json"])
    assert quiet.returncode == 0, quiet.stderr
    assert "look like HU" in quiet.stderr and "--units HU" in quiet.stderr  # shown even with -q
    record = json.loads((tmp_path / "a.json").read_text())["files"][0]
    assert record["intensity_ranges"][0]["rule"].startswith("percentiles")
    assert any("look like HU" in note for note in record["notes"])
    told = run(
        ["denoise", tmp_path / "ct_hu.tif", "-m", "ldct", *FAST, "--units", "HU", "--overwrite"]
        + ["--report", tmp_path / "b.json"]
    )
    assert told.returncode == 0, told.stderr
    record = json.loads((tmp_path / "b.json").read_text())["files"][0]
    assert (record["intensity_ranges"][0]["low"], record["intensity_ranges"][0]["high"]) == (-1024.0, 3072.0)
    assert "warning" not in told.stderr


def test_auto_is_reproducible_from_the_recorded_numbers(tmp_path, gray_checkpoint, rng):
    import tifffile

    from napari_clipdenoise import denoise, load_model

    data = rng.integers(200, 3000, (2, 48, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", data)
    done = run(["denoise", tmp_path / "stack.tif", "-m", gray_checkpoint, *FAST, "--axes", "ZYX"])
    assert done.returncode == 0, done.stderr
    provenance = read_provenance(tmp_path / "stack_denoised.tif")
    assert provenance["parameters"]["intensity_range"] == "auto"
    ranges = [(r["low"], r["high"]) for r in provenance["parameters"]["intensity_ranges"]]
    again = denoise(data, load_model(gray_checkpoint), axes="ZYX", intensity_range=tuple(ranges), tile_size=None,
                    precision="fp32", device="cpu")  # fmt: skip
    np.testing.assert_array_equal(again, tifffile.imread(tmp_path / "stack_denoised.tif"))


# ---------------------------------------------------------------- optional packages
_BLOCKED = """
import sys
sys.modules["pydicom"] = None  # import pydicom -> ImportError, as when it is not installed
sys.modules["nibabel"] = None
import napari_clipdenoise, napari_clipdenoise.formats, napari_clipdenoise.inference.pipeline
from pathlib import Path
from napari_clipdenoise.formats import format_of, open_source
from napari_clipdenoise.formats.base import MissingExtraError
for path in sys.argv[1:]:
    print(format_of(Path(path)))
    try:
        open_source(Path(path))
    except MissingExtraError as exc:
        print(exc)
"""


def test_without_pydicom_and_nibabel_the_core_imports_and_the_error_names_the_extra(tmp_path):
    write_series(tmp_path / "series", 2)
    write_nifti(tmp_path / "v.nii")
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED, str(tmp_path / "series"), str(tmp_path / "v.nii")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "dicom" and "pydicom" in lines[1] and 'pip install "napari-clipdenoise[ct]"' in lines[1]
    assert lines[2] == "nifti" and "nibabel" in lines[3] and "napari-clipdenoise[ct]" in lines[3]
