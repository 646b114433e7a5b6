"""``evaluate --mode ct`` on quarter-/full-dose pairs stored as DICOM series and NIfTI volumes (HU).

Each slice is one image; the noisy row's PSNR is recomputed here from the HU values
the test wrote (truncated to [-1024, 3072], data range 4096, METHOD.md section 4).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ct_data import write_nifti, write_series


def independent_psnr_hu(target: np.ndarray, test: np.ndarray) -> float:
    a = np.clip(target.astype(np.float64), -1024, 3072)
    b = np.clip(test.astype(np.float64), -1024, 3072)
    return float(10 * np.log10(4096.0**2 / np.mean((a - b) ** 2)))


def test_ct_mode_takes_dicom_series_and_nifti_pairs(tmp_path, gray_checkpoint, one_torch_thread):
    from napari_clipdenoise.training.evaluate import main

    dicom_set = tmp_path / "mayo_dicom"
    full = write_series(dicom_set / "full_1mm" / "L506", 2, seed=1)
    quarter = write_series(dicom_set / "quarter_1mm" / "L506", 2, seed=2)
    nifti_set = tmp_path / "mayo_nifti"
    nifti_set.mkdir()
    target, _ = write_nifti(nifti_set / "L067_target.nii.gz", shape=(24, 20, 2), seed=3)
    noisy, _ = write_nifti(nifti_set / "L067_input.nii.gz", shape=(24, 20, 2), seed=4)
    out = tmp_path / "eval"
    argv = ["--mode", "ct", "--sets", str(dicom_set), str(nifti_set), "--methods", "noisy", str(gray_checkpoint),
            "--out", str(out), "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    document = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["set"]): r for r in document["results"]}
    dicom_noisy = rows[("noisy", "mayo_dicom")]
    assert [im["name"] for im in dicom_noisy["images"]] == ["L506[z=0]", "L506[z=1]"]
    for z, image in enumerate(dicom_noisy["images"]):
        assert image["psnr"] == pytest.approx(independent_psnr_hu(full["hu"][z], quarter["hu"][z]), abs=1e-6)
    nifti_noisy = rows[("noisy", "mayo_nifti")]
    assert nifti_noisy["n_images"] == 2
    for z, image in enumerate(nifti_noisy["images"]):
        assert image["psnr"] == pytest.approx(independent_psnr_hu(target[z], noisy[z]), abs=1e-6)
    model_rows = [r for (method, _), r in rows.items() if method != "noisy"]
    assert len(model_rows) == 2 and all(np.isfinite(r["mean_psnr"]) for r in model_rows)


def test_ct_mode_reports_pairs_that_do_not_match(tmp_path):
    from napari_clipdenoise.training.evaluate import EvaluationError, evaluate, resolve_methods

    folder = tmp_path / "set"
    write_series(folder / "quarter_dose" / "A", 2, seed=1)
    write_series(folder / "full_dose" / "A", 3, seed=2)
    with pytest.raises(EvaluationError, match="differ in size"):
        evaluate([folder], resolve_methods(["noisy"]), mode="ct")
    write_series(folder / "quarter_dose" / "B", 2, seed=1)
    with pytest.raises(EvaluationError, match="no full-dose item"):
        evaluate([folder], resolve_methods(["noisy"]), mode="ct")
