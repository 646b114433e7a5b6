"""The offline sRGB pair synthesis: seeded, 8-bit, noisy, and its Malvar demosaicing is right."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data

from napari_clipdenoise.training import synth_srgb as ss


@pytest.fixture(scope="module")
def curves():
    return ss.parametric_response_curves()


def smooth_image(height=48, width=64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / 64.0
    return np.stack([0.5 + 0.3 * np.sin(2 * x + y), 0.4 + 0.3 * np.cos(1.5 * y - 0.5 * x), 0.3 + 0.2 * x * y], -1)


@pytest.mark.parametrize("pattern", ss.BAYER_PATTERNS)
def test_malvar_reproduces_a_smooth_image_from_its_mosaic(pattern):
    image = smooth_image()
    cfa = ss.mosaic(image, pattern)
    r, g, b = ss.bayer_masks(image.shape[:2], pattern)
    assert r.sum() == b.sum() == g.sum() / 2 == image.shape[0] * image.shape[1] / 4
    np.testing.assert_array_equal(cfa[r], image[..., 0][r])  # each site keeps its own colour
    out = ss.demosaic_malvar(cfa, pattern)
    assert out.shape == image.shape
    interior = (slice(3, -3), slice(3, -3))
    assert np.abs(out[interior] - image[interior]).max() < 1e-3
    # known samples pass through unchanged
    np.testing.assert_allclose(out[..., 1][g], image[..., 1][g])
    # the filters are exact on images that are affine per channel (distinct slopes per colour)
    y, x = np.mgrid[0:20, 0:22].astype(np.float64)
    affine = np.stack([0.1 + 0.02 * x + 0.01 * y, 0.5 - 0.01 * x + 0.015 * y, 0.3 + 0.005 * x - 0.02 * y], -1)
    exact = ss.demosaic_malvar(ss.mosaic(affine, pattern), pattern)
    np.testing.assert_allclose(exact[2:-2, 2:-2], affine[2:-2, 2:-2], atol=1e-12)


def test_response_curves_are_valid(curves):
    assert len(curves) == 201 and curves.brightness.shape == (201, 1024)
    assert np.all(np.diff(curves.brightness, axis=1) > 0)  # strictly increasing
    np.testing.assert_allclose(curves.brightness[:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(curves.brightness[:, -1], 1, atol=1e-12)
    x = np.linspace(0.05, 1, 50)
    for k in (0, 57, 200):
        np.testing.assert_allclose(curves.inverse(curves.forward(x, k), k), x, atol=2e-3)
    params = ss.parametric_curve_parameters()
    assert params[:, 0].min() >= 1 and params[:, 0].max() <= 3 and params[:, 1].min() >= 1 and params[:, 1].max() <= 1.6
    assert "generated" in curves.source


def test_synthesis_is_seeded_8bit_and_noisy(curves):
    clean = skimage.data.chelsea()[80:144, 150:214].astype(np.float64) / 255.0
    noisy, params = ss.synthesize_srgb(clean, ss.image_rng(0, "cat.png"), curves)
    again, params_again = ss.synthesize_srgb(clean, ss.image_rng(0, "cat.png"), curves)
    other, _ = ss.synthesize_srgb(clean, ss.image_rng(1, "cat.png"), curves)
    assert noisy.shape == clean.shape and noisy.dtype == np.float64
    assert 0 <= noisy.min() and noisy.max() <= 1
    np.testing.assert_array_equal(noisy, again)
    assert params == params_again and params["pattern"] in ss.BAYER_PATTERNS
    assert 0.75 <= params["red_gain"] <= 1 and 0.75 <= params["blue_gain"] <= 1
    assert abs(sum(params["camera_weights"]) - 1) < 1e-12 and 0 <= params["curve"] < 201
    assert not np.array_equal(noisy, other)
    clean_path, _ = ss.synthesize_srgb(clean, ss.image_rng(0, "cat.png"), curves, sigma_s=0.0, sigma_c=0.0)
    residual = noisy - clean_path  # same curve, matrices and gains, only the raw noise differs
    assert residual.std() > 0.02  # 0.03 read noise in raw is amplified by the response curve
    assert np.abs(clean_path - clean)[2:-2, 2:-2].mean() < 0.03  # without noise the pipeline ~ identity
    eight_bit = ss.to_uint8(noisy)
    assert eight_bit.dtype == np.uint8 and eight_bit.shape == clean.shape


def test_command_line_writes_pairs_training_can_read(tmp_path):
    clean_dir, out_dir = tmp_path / "clean", tmp_path / "noisy"
    clean_dir.mkdir()
    iio.imwrite(clean_dir / "a.png", skimage.data.astronaut()[:40, :48])
    iio.imwrite(clean_dir / "b.jpg", skimage.data.coffee()[:32, :40])
    iio.imwrite(clean_dir / "c.png", skimage.data.camera()[:34, :36])  # grayscale -> RGB
    assert ss.main(["--clean", str(clean_dir), "--out", str(out_dir), "--seed", "5", "--no-progress"]) == 0
    names = sorted(p.name for p in out_dir.glob("*.png"))
    assert names == ["a.png", "b.png", "c.png"]
    first = iio.imread(out_dir / "a.png")
    assert first.dtype == np.uint8 and first.shape == (40, 48, 3)
    assert not np.array_equal(first, skimage.data.astronaut()[:40, :48])
    log = json.loads((out_dir / "synth_srgb_log.json").read_text())
    assert log["seed"] == 5 and len(log["images"]) == 3 and "generated" in log["curves"]
    # reproducible: a second run with --overwrite gives identical files
    assert (
        ss.main(["--clean", str(clean_dir), "--out", str(out_dir), "--seed", "5", "--overwrite", "--no-progress"]) == 0
    )
    np.testing.assert_array_equal(iio.imread(out_dir / "a.png"), first)
    # never writes into the clean folder; the CBDNet .mat options go together
    assert ss.main(["--clean", str(clean_dir), "--out", str(clean_dir), "--no-progress"]) == 2
    assert ss.main(["--clean", str(clean_dir), "--out", str(out_dir), "--crf-mat", "x.mat", "--no-progress"]) == 2

    from napari_clipdenoise.training.config import load_config
    from napari_clipdenoise.training.data import PatchSampler

    config = load_config(
        "srgb",
        [("data.train", str(clean_dir)), ("data.noisy", str(out_dir)), ("data.crop_size", 32), ("data.batch_size", 3)],
    )
    clean, noisy = PatchSampler(config, seed=0).next_batch()
    assert clean.shape == noisy.shape == (3, 3, 32, 32) and clean.dtype == np.float32
    assert 0.01 < np.abs(clean - noisy).mean() < 0.5
