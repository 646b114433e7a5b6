"""PSNR / SSIM against hand-derived values and an independent straightforward implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import convolve2d

from napari_clipdenoise import metrics
from napari_clipdenoise.metrics import psnr, ssim


def _window_2d(size=11, sigma=1.5):
    g = np.array([math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)])
    w = np.outer(g, g)
    return w / w.sum()


def _ssim_by_hand(a, b, data_range, mode):
    """Straightforward SSIM: 2D Gaussian window by convolve2d ("valid", or "same" = zero padded)."""
    w = _window_2d()
    a = a.astype(np.float64)
    b = b.astype(np.float64)

    def f(x):
        return convolve2d(x, w, mode=mode)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu1, mu2 = f(a), f(b)
    s1 = f(a * a) - mu1**2
    s2 = f(b * b) - mu2**2
    s12 = f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return m.mean()


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, size=shape).astype(np.float32) / 255.0
    noisy = np.clip(clean + rng.normal(0, 0.1, size=shape), 0, 1)
    return clean, noisy


# --------------------------------------------------------------------------- PSNR


def test_psnr_of_a_constant_offset():
    a = np.random.default_rng(1).random((13, 17, 3))
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    assert psnr(a * 255, a * 255 + 5, data_range=255) == pytest.approx(20 * math.log10(51), abs=1e-9)
    assert psnr(a, a) == math.inf


def test_psnr_averages_over_all_pixels_and_channels():
    a = np.zeros((4, 5, 3))
    b = a.copy()
    b[0, 0, 0] = 1.0  # MSE = 1/60
    assert psnr(a, b) == pytest.approx(10 * math.log10(60), abs=1e-12)


def test_psnr_validation():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        psnr(np.zeros((2, 2)), np.array([[0, np.nan], [0, 0]]))
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((2, 2)), np.ones((2, 2)), data_range=0)


# --------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("shape", [(23, 31), (32, 32, 3), (19, 27, 3)])
def test_ssim_matches_an_independent_valid_window_implementation(shape):
    clean, noisy = _pair(shape)
    clean = clean.astype(np.float64)
    a, b = clean * 255.0, noisy * 255.0
    if len(shape) == 2:
        expected = _ssim_by_hand(a, b, 255, "valid")
        got = ssim(a, b, data_range=255)
    else:
        expected = np.mean([_ssim_by_hand(a[..., c], b[..., c], 255, "valid") for c in range(3)])
        got = ssim(a, b, data_range=255, channel_axis=-1)
    assert got == pytest.approx(expected, abs=1e-6)
    assert 0.5 < got < 0.99  # a real, non-trivial value
    # same image, [0, 1] scale and data_range 1: the scale-free SSIM is unchanged
    assert ssim(clean, noisy, channel_axis=None if len(shape) == 2 else -1) == pytest.approx(got, abs=1e-9)


def test_ssim_agrees_with_scikit_image_gaussian_ssim():
    from skimage.metrics import structural_similarity

    clean, noisy = _pair((41, 37, 3), seed=4)
    sk = structural_similarity(
        clean.astype(np.float64),
        noisy,
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(clean, noisy, channel_axis=-1) == pytest.approx(sk, abs=1e-6)


def test_ssim_known_values():
    a = np.random.default_rng(2).random((16, 16, 3))
    assert ssim(a, a, channel_axis=-1) == pytest.approx(1.0, abs=1e-12)
    # constant images: sigma terms vanish, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert ssim(np.full((20, 20), 0.5), np.full((20, 20), 0.25)) == pytest.approx(expected, abs=1e-12)
    # channel axis first gives the same as channel axis last
    b = np.clip(a + 0.05 * np.random.default_rng(3).standard_normal(a.shape), 0, 1)
    assert ssim(np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0), channel_axis=0) == pytest.approx(
        ssim(a, b, channel_axis=-1), abs=1e-15
    )


def test_ssim_validation():
    with pytest.raises(ValueError, match="channel_axis"):
        ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))
    with pytest.raises(ValueError, match="same shape"):
        ssim(np.zeros((16, 16)), np.zeros((16, 17)))


# --------------------------------------------------------------------------- paper protocol


def test_reference_metrics_are_on_the_255_scale():
    clean, noisy = _pair((21, 25, 3), seed=5)
    noisy = noisy.astype(np.float32)  # the network output is float32
    # the reference multiplies its float32 images by 255.0 (staying float32), then casts to float64
    a, b = (clean * 255.0).astype(np.float64), (noisy * 255.0).astype(np.float64)
    expected_psnr = 20 * math.log10(255.0 / math.sqrt(np.mean((a - b) ** 2)))
    assert metrics.reference_psnr(clean, noisy) == pytest.approx(expected_psnr, abs=1e-12)
    expected_ssim = np.mean(
        [_ssim_by_hand(clean[..., c] * 255.0, noisy[..., c] * 255.0, 255, "valid") for c in range(3)]
    )
    assert metrics.reference_ssim(clean, noisy) == pytest.approx(expected_ssim, abs=1e-6)
    # one gray level everywhere: MSE 1 on the 255 scale -> 20 log10(255)
    assert metrics.reference_psnr(clean, clean + np.float32(1 / 255)) == pytest.approx(20 * math.log10(255), abs=1e-4)
    # no rounding: a sub-gray-level difference still counts
    clean64 = clean.astype(np.float64)
    assert metrics.reference_psnr(clean64, clean64 + 0.1 / 255) == pytest.approx(20 * math.log10(2550), abs=1e-4)


def test_real_noise_metrics_round_the_output_to_8_bits():
    rng = np.random.default_rng(6)
    clean = rng.integers(0, 255, size=(20, 22, 3)).astype(np.uint8)  # max 254: +1 stays in range
    p, s = metrics.real_noise_metrics(clean, (clean + 0.4) / 255.0)
    assert p == math.inf and s == pytest.approx(1.0, abs=1e-12)
    p, s = metrics.real_noise_metrics(clean, (clean + 0.6) / 255.0)  # rounds to clean + 1
    assert p == pytest.approx(20 * math.log10(255), abs=1e-9)
    expected = np.mean([_ssim_by_hand(clean[..., c], clean[..., c] + 1.0, 255, "valid") for c in range(3)])
    assert s == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        metrics.real_noise_metrics(clean.astype(np.float32), clean / 255.0)


# --------------------------------------------------------------------------- CT


def test_denormalize_ct():
    v = np.array([0.0, 0.25, 1.0])
    np.testing.assert_array_equal(metrics.denormalize_ct(v), [-1024.0, 0.0, 3072.0])
    # the reference's constant (3096, a typo for 3072), passed explicitly
    np.testing.assert_array_equal(metrics.denormalize_ct(v, max_hu=metrics.REFERENCE_CT_MAX_HU), [-1024.0, 6.0, 3096.0])
    with pytest.raises(ValueError, match="min_hu < max_hu"):
        metrics.denormalize_ct(v, min_hu=10, max_hu=0)


def test_ct_psnr_known_values_and_truncation():
    target = np.random.default_rng(7).uniform(-900, 2900, size=(24, 24))
    assert metrics.ct_psnr(target, target + 40.96) == pytest.approx(40.0, abs=1e-9)  # 20 log10(4096/40.96)
    # values outside [-1024, 3072] HU are truncated before comparing
    assert metrics.ct_psnr(np.full((4, 4), 3072.0), np.full((4, 4), 5000.0)) == math.inf
    assert metrics.ct_psnr(np.full((4, 4), -1024.0), np.full((4, 4), -3000.0)) == math.inf
    assert metrics.ct_psnr(np.full((4, 4), -1024.0), np.full((4, 4), 3072.0)) == pytest.approx(0.0, abs=1e-12)


def test_ct_ssim_matches_zero_padded_same_filtering():
    rng = np.random.default_rng(8)
    target = rng.uniform(-1100, 3200, size=(27, 33))  # odd size, some values outside the HU window
    output = target + rng.normal(0, 300, size=target.shape)
    t, o = np.clip(target, -1024, 3072), np.clip(output, -1024, 3072)
    expected = _ssim_by_hand(t, o, 4096, "same")
    got = metrics.ct_ssim(target, output)
    assert got == pytest.approx(expected, abs=1e-6)
    # the zero-padded borders make it differ from the valid-window SSIM
    assert abs(got - ssim(t, o, data_range=4096)) > 1e-3
    assert metrics.ct_ssim(target, target) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="2D"):
        metrics.ct_ssim(np.zeros((2, 16, 16)), np.zeros((2, 16, 16)))
