"""The evaluation module reproduces the reference protocol: noisy inputs, metrics, inference, tables.

Everything is checked against independent computations written here from METHOD.md section 4
(the reference's test scripts), not against the core functions the module calls.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
from scipy import ndimage, signal

from napari_clipdenoise.inference.options import InferenceOptions
from napari_clipdenoise.training.evaluate import (
    EvaluationError,
    InferenceSettings,
    Method,
    apply_method,
    evaluate,
    markdown_tables,
    parse_noise_specs,
    resolve_methods,
    synthesize,
)

REPO = Path(__file__).resolve().parents[1]
FIRST_STANDARD_NORMAL_SEED0 = 1.764052345967664  # np.random.seed(0); np.random.normal()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """Three small bundled images: odd sizes, and a grayscale one (read as RGB like OpenCV does)."""
    folder = tmp_path_factory.mktemp("sets") / "bundled"
    folder.mkdir()
    iio.imwrite(folder / "a_chelsea.png", skimage.data.chelsea()[100:145, 150:201])  # 45 x 51
    iio.imwrite(folder / "b_camera.png", skimage.data.camera()[200:248, 220:284])  # gray 48 x 64
    iio.imwrite(folder / "c_astronaut.png", skimage.data.astronaut()[30:63, 200:240])  # 33 x 40
    return folder


# --------------------------------------------------------------------- independent reference code
def read_clean(path: Path) -> np.ndarray:
    image = iio.imread(path)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.float32(image) / 255.0


def independent_noisy(clean: np.ndarray, kind: str, level: float) -> np.ndarray:
    np.random.seed(0)
    if kind == "gauss":
        return clean + np.random.normal(0, level / 255.0, clean.shape)
    if kind == "spatial_gauss":
        noise = np.random.normal(0, level / 255.0, clean.shape)
        for c in range(clean.shape[-1]):
            noise[..., c] = ndimage.convolve(noise[..., c], np.ones((3, 3)) / 9.0)
        return clean + noise
    quantized = np.clip((clean * 255.0).round(), 0, 255) / 255.0
    values = 2 ** np.ceil(np.log2(len(np.unique(quantized))))
    photons = np.float32(np.random.poisson(quantized * values) / float(values))
    return np.clip(clean + (photons - quantized) * level, 0, 1)


def independent_psnr(a255: np.ndarray, b255: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a255.astype(np.float64) - b255.astype(np.float64)) ** 2)
    return 20 * math.log10(peak / math.sqrt(mse))


def _window() -> np.ndarray:
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    return np.outer(g, g)


def independent_ssim(a255: np.ndarray, b255: np.ndarray) -> float:
    """MATLAB-style SSIM: 2D Gaussian window, valid part only, per channel, averaged."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _window()
    values = []
    for c in range(a255.shape[-1]):
        x, y = a255[..., c].astype(np.float64), b255[..., c].astype(np.float64)
        f = lambda z: signal.correlate2d(z, window, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        values.append(ssim_map.mean())
    return float(np.mean(values))


# --------------------------------------------------------------------- tests
def test_noisy_rows_match_an_independent_reference_computation(test_set):
    document = evaluate([test_set], resolve_methods(["noisy"]))
    rows = {(r["noise"], r["level"]): r for r in document["results"]}
    assert set(rows) == {
        ("gauss", 15.0),
        ("gauss", 25.0),
        ("gauss", 50.0),
        ("spatial_gauss", 40.0),
        ("spatial_gauss", 45.0),
        ("spatial_gauss", 50.0),
        ("spatial_gauss", 55.0),
        ("poisson", 2.0),
        ("poisson", 2.5),
        ("poisson", 3.0),
        ("poisson", 3.5),
    }
    files = sorted(test_set.iterdir())
    for (kind, level), row in rows.items():
        assert [im["name"] for im in row["images"]] == [f.name for f in files]
        psnrs, ssims = [], []
        for image, path in zip(row["images"], files, strict=True):
            clean = read_clean(path)
            noisy = independent_noisy(clean, kind, level)
            out = np.clip(noisy.astype(np.float32), 0, 1)  # the "noisy" method: network input, clamped
            psnrs.append(independent_psnr(clean * 255.0, out * 255.0))
            ssims.append(independent_ssim(clean * 255.0, out * 255.0))
            assert image["psnr"] == pytest.approx(psnrs[-1], abs=1e-4), (kind, level, path.name)
            assert image["ssim"] == pytest.approx(ssims[-1], abs=1e-6), (kind, level, path.name)
        assert row["mean_psnr"] == pytest.approx(np.mean(psnrs), abs=1e-4)
        assert row["mean_ssim"] == pytest.approx(np.mean(ssims), abs=1e-6)
        assert row["n_images"] == 3


def test_noise_inputs_bit_for_bit_and_hand_derived(test_set):
    path = sorted(test_set.iterdir())[0]
    clean = read_clean(path)
    assert clean.shape == (45, 51, 3)
    for kind, level in (("gauss", 25), ("spatial_gauss", 50), ("poisson", 3.5)):
        np.testing.assert_array_equal(synthesize(clean, kind, level), independent_noisy(clean, kind, level))
    # the first draw after np.random.seed(0) is 1.764052345967664: reset per image and level
    noisy = synthesize(clean, "gauss", 15.0)
    assert noisy[0, 0, 0] - clean[0, 0, 0] == pytest.approx(FIRST_STANDARD_NORMAL_SEED0 * 15 / 255, abs=1e-12)
    noisy = synthesize(clean, "gauss", 50.0)
    assert noisy[0, 0, 0] - clean[0, 0, 0] == pytest.approx(FIRST_STANDARD_NORMAL_SEED0 * 50 / 255, abs=1e-12)
    # spatial: the top-left value is the mean of the 3x3 reflect neighbourhood of the white noise
    np.random.seed(0)
    white = np.random.normal(0, 40 / 255, clean.shape)[..., 0]
    corner = white[[0, 0, 1, 0, 0, 1, 1, 1, 0], [0, 1, 0, 0, 1, 0, 1, 0, 1]]  # reflect: index -1 -> 0
    corner = np.array([white[i, j] for i in (0, 0, 1) for j in (0, 0, 1)])
    assert synthesize(clean, "spatial_gauss", 40.0)[0, 0, 0] - clean[0, 0, 0] == pytest.approx(corner.mean(), abs=1e-12)
    # poisson output is clipped to [0, 1]; extension kinds use add_noise with default_rng(0)
    assert synthesize(clean, "poisson", 3.5).min() >= 0 and synthesize(clean, "poisson", 3.5).max() <= 1
    np.testing.assert_array_equal(synthesize(clean, "speckle", 0.1), synthesize(clean, "speckle", 0.1))


def test_metrics_on_hand_derived_values(tmp_path):
    """Real mode: constant images 100 vs 110 give PSNR 20*log10(25.5) and SSIM (2ab+C1)/(a^2+b^2+C1)."""
    root = tmp_path / "const"
    (root / "noisy").mkdir(parents=True)
    (root / "clean").mkdir()
    iio.imwrite(root / "clean" / "x.png", np.full((24, 30, 3), 100, np.uint8))
    iio.imwrite(root / "noisy" / "x.png", np.full((24, 30, 3), 110, np.uint8))
    document = evaluate([root], resolve_methods(["noisy"]), mode="real")
    (row,) = document["results"]
    c1 = (0.01 * 255) ** 2
    assert row["mean_psnr"] == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    assert row["mean_ssim"] == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)
    assert row["noise"] == "real" and row["level"] is None


def test_real_mode_with_cc_style_names(tmp_path):
    root = tmp_path / "CC"
    root.mkdir()
    rng = np.random.default_rng(0)
    clean = skimage.data.astronaut()[:40, :44]
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).round().astype(np.uint8)
    iio.imwrite(root / "img1_mean.png", clean)
    iio.imwrite(root / "img1_real.png", noisy)
    document = evaluate([root], resolve_methods(["noisy", "tv"]), mode="real")
    rows = {r["method"]: r for r in document["results"]}
    assert rows["noisy"]["mean_psnr"] == pytest.approx(independent_psnr(clean, noisy), abs=1e-9)
    assert rows["noisy"]["mean_ssim"] == pytest.approx(independent_ssim(clean, noisy), abs=1e-6)
    assert rows["tv"]["mean_psnr"] > rows["noisy"]["mean_psnr"]


def _ct_ssim_same(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 4096) ** 2, (0.03 * 4096) ** 2
    f = lambda z: signal.correlate2d(z, _window(), mode="same", boundary="fill")  # noqa: E731
    mx, my = f(a), f(b)
    sxx, syy, sxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


@pytest.mark.parametrize("max_hu", [3072.0, 3096.0])
def test_ct_mode_metrics(tmp_path, max_hu):
    root = tmp_path / "mayo"
    root.mkdir()
    rng = np.random.default_rng(1)
    phantom = skimage.transform.resize(skimage.data.shepp_logan_phantom(), (40, 48)).astype(np.float32)
    target = (phantom * 0.5 + 0.1).astype(np.float32)
    noisy = (target + rng.normal(0, 0.02, target.shape)).astype(np.float32)
    np.save(root / "L506_0001_target.npy", target)
    np.save(root / "L506_0001_input.npy", noisy)
    np.save(root / "L067_0001_target.npy", target)  # another patient, filtered out
    np.save(root / "L067_0001_input.npy", target)
    document = evaluate([root], resolve_methods(["noisy"]), mode="ct", ct_max_hu=max_hu, ct_include="L506")
    (row,) = document["results"]
    assert row["n_images"] == 1 and row["images"][0]["name"] == "L506_0001_input.npy"
    to_hu = lambda v: np.clip(v.astype(np.float64) * (max_hu + 1024) - 1024, -1024, 3072)  # noqa: E731
    assert row["mean_psnr"] == pytest.approx(independent_psnr(to_hu(target), to_hu(noisy), 4096.0), abs=1e-9)
    assert row["mean_ssim"] == pytest.approx(_ct_ssim_same(to_hu(target), to_hu(noisy)), abs=1e-6)
    assert document["settings"]["ct_max_hu"] == max_hu


def test_reference_inference_equals_a_direct_network_call(rgb_model, gray_model):
    """The reference protocol's inference equals the reference's own code (torch reflect pad to 32, crop, clamp)."""
    import torch
    from torch.nn import functional as F

    rng = np.random.default_rng(3)
    noisy = (rng.random((37, 45, 3)) * 1.2 - 0.1).astype(np.float64)  # unclipped, like Gaussian test inputs
    method = Method("m", "model", "m", model=rgb_model)
    ours = apply_method(method, noisy, InferenceSettings("reference", InferenceOptions(device="cpu", precision="fp32")))
    x = torch.from_numpy(noisy).permute(2, 0, 1).float().contiguous()[None]  # the layout alone changes the last bits
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (32 - w % 32) % 32, 0, (32 - h % 32) % 32), "reflect")
    with torch.no_grad():
        direct = rgb_model.network.eval()(x)[:, :, :h, :w].clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert ours.shape == noisy.shape and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, direct)
    gray = apply_method(
        Method("g", "model", "g", model=gray_model),
        noisy[..., 0],
        InferenceSettings("reference", InferenceOptions(device="cpu", precision="fp32")),
        clamp=False,
    )
    x1 = F.pad(torch.from_numpy(noisy[..., 0]).float()[None, None], (0, 19, 0, 27), "reflect")
    with torch.no_grad():
        np.testing.assert_array_equal(gray, gray_model.network.eval()(x1)[0, 0, :37, :45].numpy())
    tiled = apply_method(
        method,
        noisy,
        InferenceSettings("tiled", InferenceOptions(device="cpu", precision="fp32", tile_size=32, overlap=16)),
    )
    assert tiled.shape == noisy.shape and 0 <= tiled.min() and tiled.max() <= 1


def test_tables_and_cli(test_set, tmp_path, rgb_checkpoint):
    second = tmp_path / "second"
    second.mkdir()
    iio.imwrite(second / "coins.png", skimage.data.coins()[:40, :40])
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_clipdenoise.training.evaluate",
            "--sets",
            str(test_set),
            str(second),
            "--methods",
            "noisy",
            "tv",
            str(rgb_checkpoint),
            "--noise",
            "gauss:15,25",
            "speckle:0.1",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
            "--limit",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()
    assert table in result.stdout
    assert "| Method | bundled 15 | bundled 25 | second 15 | second 25 |" in table
    assert "| Method | bundled 0.1 | second 0.1 |" in table
    assert set(document["methods"]) == {"noisy", "tv", "random_rgb"}
    assert document["methods"]["random_rgb"]["kind"] == "model"
    assert len(document["results"]) == 3 * 2 * 3  # methods x sets x (noise, level)
    assert all(r["n_images"] == (2 if r["set"] == "bundled" else 1) for r in document["results"])
    noisy_row = next(r for r in document["results"] if r["method"] == "noisy" and r["set"] == "second")
    assert f"{noisy_row['mean_psnr']:.2f}/{noisy_row['mean_ssim']:.4f}" in table


def test_bad_requests_are_explained(test_set, tmp_path):
    with pytest.raises(EvaluationError, match="KIND:LEVEL"):
        parse_noise_specs(["gauss"])
    with pytest.raises(EvaluationError, match="unknown noise kind 'pink'"):
        parse_noise_specs(["pink:3"])
    assert parse_noise_specs(["default"])[0] == ("gauss", [15.0, 25.0, 50.0])
    with pytest.raises(EvaluationError, match="not 'noisy', a classical method"):
        resolve_methods(["no_such_model"])
    with pytest.raises(EvaluationError, match="not found"):
        evaluate([tmp_path / "missing"], resolve_methods(["noisy"]))
    doc = evaluate([test_set], resolve_methods(["noisy", "noisy"]), noise=[("gauss", [15.0])], limit=1)
    assert set(doc["methods"]) == {"noisy", "noisy (2)"}
    assert "noisy (2)" in markdown_tables(doc)
