"""Noise synthesis: the reference protocol reproduced bit for bit, and the general noise models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from napari_clipdenoise import noise
from napari_clipdenoise.noise import NOISE_MODELS, add_noise, estimate_noise_sigma

LEVELS = {
    "gaussian": 25,
    "poisson": 2.5,
    "poisson_peak": 30,
    "spatial_gaussian": 50,
    "speckle": 0.2,
    "salt_pepper": 0.1,
}


def _clean_rgb(shape=(17, 23, 3), seed=3):
    """An 8-bit RGB image read the reference's way (uint8 / 255 in float32); odd size on purpose."""
    u8 = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    return u8, u8.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- reference protocol


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_reference_gauss_is_bit_identical_to_the_documented_formula(sigma):
    u8, clean = _clean_rgb()
    np.random.seed(0)
    expected = clean + np.random.normal(0, sigma / 255.0, clean.shape)
    np.random.seed(0)
    got = noise.reference_gauss(clean, sigma)
    assert got.dtype == np.float64 and expected.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    # the dispatcher and a uint8 input (divided by 255 in float32) give the same bits
    np.random.seed(0)
    np.testing.assert_array_equal(noise.reference_noisy(u8, "gauss", sigma), expected)


@pytest.mark.parametrize("sigma", [40, 55])
def test_reference_spatial_gauss_is_bit_identical_to_the_documented_formula(sigma):
    _, clean = _clean_rgb()
    np.random.seed(0)
    white = np.random.normal(0, sigma / 255.0, clean.shape)
    box = np.ones((3, 3)) / 9
    blurred = np.stack([ndimage.convolve(white[:, :, c], box) for c in range(3)], axis=-1)
    expected = clean + blurred
    np.random.seed(0)
    got = noise.reference_noisy(clean, "spatial_gauss", sigma)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)

    # scipy's default "reflect" border is the half-sample symmetric one (edge pixel repeated):
    # check the blur against a plain padded 3x3 sum written out by hand.
    padded = np.pad(white, ((1, 1), (1, 1), (0, 0)), mode="symmetric")
    h, w = clean.shape[:2]
    by_hand = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(got - clean, by_hand, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("n_unique", "v_by_hand"),
    [(1, 1.0), (3, 4.0), (100, 128.0), (128, 128.0), (129, 256.0), (256, 256.0)],
)
def test_reference_poisson_uses_v_from_the_unique_count(n_unique, v_by_hand):
    # an odd-size RGB image whose 8-bit values take exactly n_unique distinct values
    rng = np.random.default_rng(n_unique)
    values = np.arange(n_unique, dtype=np.uint8) if n_unique < 256 else np.arange(256, dtype=np.uint8)
    u8 = rng.permutation(np.resize(values, 15 * 21 * 3)).reshape(15, 21, 3).astype(np.uint8)
    assert len(np.unique(u8)) == n_unique
    clean = u8.astype(np.float32) / 255.0
    scale = 3.5
    np.random.seed(0)
    q = np.clip((clean * 255.0).round(), 0, 255) / 255.0
    counts = np.random.poisson(q * v_by_hand)
    expected = np.clip(clean + (np.float32(counts / v_by_hand) - q) * scale, 0, 1)
    np.random.seed(0)
    got = noise.reference_poisson(clean, scale)
    assert got.dtype == np.float32 and expected.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_reference_poisson_on_a_real_photograph():
    from skimage import data

    clean = data.astronaut()[:33, :45].astype(np.float32) / 255.0
    v = 2.0 ** np.ceil(np.log2(len(np.unique(np.clip((clean * 255.0).round(), 0, 255) / 255.0))))
    for scale in noise.REFERENCE_LEVELS["poisson"]:
        np.random.seed(0)
        q = np.clip((clean * 255.0).round(), 0, 255) / 255.0
        expected = np.clip(clean + (np.float32(np.random.poisson(q * v) / v) - q) * scale, 0, 1)
        np.random.seed(0)
        np.testing.assert_array_equal(noise.reference_noisy(clean, "poisson", scale), expected)


def test_reference_draws_depend_only_on_the_seed_reset():
    _, clean = _clean_rgb()
    np.random.seed(0)
    first = noise.reference_gauss(clean, 25)
    noise.reference_gauss(clean, 25)  # advances the global state
    np.random.seed(0)
    np.testing.assert_array_equal(noise.reference_gauss(clean, 25), first)


def test_reference_validation():
    _, clean = _clean_rgb()
    with pytest.raises(ValueError, match="float32"):
        noise.reference_gauss(clean.astype(np.float64), 15)
    with pytest.raises(ValueError, match="kind must be one of"):
        noise.reference_noisy(clean, "gaussian", 15)
    with pytest.raises(ValueError, match="sigma"):
        noise.reference_spatial_gauss(clean, -1)
    with pytest.raises(ValueError, match="scale"):
        noise.reference_poisson(clean, float("nan"))


# --------------------------------------------------------------------------- general models


@pytest.mark.parametrize("kind", sorted(NOISE_MODELS))
def test_seeded_noise_is_reproducible_and_keeps_shape_and_dtype(kind):
    _, clean = _clean_rgb()
    original = clean.copy()
    a = add_noise(clean, kind, LEVELS[kind], rng=7)
    b = add_noise(clean, kind, LEVELS[kind], rng=np.random.default_rng(7))
    c = add_noise(clean, kind, LEVELS[kind], rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == clean.shape and a.dtype == np.float32
    assert not np.array_equal(a, clean)
    np.testing.assert_array_equal(clean, original)  # input untouched
    gray64 = clean[..., 0].astype(np.float64)
    assert add_noise(gray64, kind, LEVELS[kind], rng=0).dtype == np.float64


def test_gaussian_and_speckle_follow_their_formulas():
    _, clean = _clean_rgb()
    x = clean.astype(np.float64)
    rng = np.random.default_rng(5)
    expected = x + rng.normal(0.0, 25 / 255.0, size=x.shape)
    np.testing.assert_array_equal(add_noise(x, "gaussian", 25, rng=5), expected)
    rng = np.random.default_rng(5)
    expected = x + x * rng.normal(0.0, 0.3, size=x.shape)
    np.testing.assert_array_equal(add_noise(x, "speckle", 0.3, rng=5), expected)
    assert np.all(add_noise(np.zeros((8, 8)), "speckle", 0.5, rng=0) == 0)


def test_gaussian_statistics_and_clip_default():
    clean = np.full((256, 256), 0.5)
    noisy = add_noise(clean, "gaussian", 50, rng=0)
    assert abs((noisy - clean).std() - 50 / 255) < 0.02 * 50 / 255
    assert abs((noisy - clean).mean()) < 1e-3
    edge = np.zeros((64, 64))
    assert add_noise(edge, "gaussian", 25, rng=0).min() < 0  # paper: no clipping
    assert add_noise(edge, "gaussian", 25, rng=0, clip=True).min() == 0.0


def test_paper_poisson_with_a_generator_follows_the_formula():
    _, clean = _clean_rgb()
    q = np.clip(np.round(clean * 255.0), 0, 255) / 255.0
    v = 2.0 ** np.ceil(np.log2(len(np.unique(q))))
    rng = np.random.default_rng(11)
    expected = np.clip(clean + (np.float32(rng.poisson(q * v) / v) - q) * np.float32(2.0), 0, 1)
    np.testing.assert_allclose(add_noise(clean, "poisson", 2.0, rng=11), expected, rtol=0, atol=1e-7)


def test_poisson_peak_is_unbiased_and_scales_with_the_peak():
    clean = np.full((200, 200), 0.3)
    for peak in (10.0, 1000.0):
        noisy = add_noise(clean, "poisson_peak", peak, rng=1, clip=False)
        assert abs(noisy.mean() - 0.3) < 0.01
        # Var(Poisson(x*peak)/peak) = x/peak
        assert abs(noisy.var() / (0.3 / peak) - 1) < 0.05
        assert np.allclose(noisy * peak, np.round(noisy * peak))  # photon counts


def test_spatial_gaussian_is_correlated_with_the_3x3_box():
    clean = np.full((256, 256, 3), 0.5)
    n = add_noise(clean, "spatial_gaussian", 60, rng=2) - clean
    # box of 3x3 white noise: std = sigma/3, neighbour correlation = 6/9
    assert abs(n.std() - 60 / 255 / 3) < 0.03 * 60 / 255 / 3
    r = np.corrcoef(n[:, :-1, 0].ravel(), n[:, 1:, 0].ravel())[0, 1]
    assert abs(r - 6 / 9) < 0.02
    # channels are independent
    assert abs(np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]) < 0.02
    # a gray image gets the same blur in 2D
    g = add_noise(clean[..., 0], "spatial_gaussian", 60, rng=2) - 0.5
    assert abs(np.corrcoef(g[:-1].ravel(), g[1:].ravel())[0, 1] - 6 / 9) < 0.02


def test_salt_pepper_sets_the_requested_fraction_of_pixels():
    clean = np.full((40, 50, 3), 0.5, dtype=np.float32)
    noisy = add_noise(clean, "salt_pepper", 0.1, rng=4)
    hit = np.any(noisy != 0.5, axis=-1)
    assert hit.sum() == 200  # round(0.1 * 2000) pixels
    hit_values = noisy[hit]
    assert np.all((hit_values == 0) | (hit_values == 1))
    assert np.all(hit_values.min(axis=-1) == hit_values.max(axis=-1))  # whole pixels
    assert 0 < (hit_values[:, 0] == 1).sum() < 200  # both salt and pepper
    gray = add_noise(clean[..., 0], "salt_pepper", 0.25, rng=4)
    assert (gray != 0.5).sum() == 500
    assert np.array_equal(add_noise(clean, "salt_pepper", 0.0, rng=0), clean)


@pytest.mark.parametrize(
    ("kind", "level", "exc", "match"),
    [
        ("blur", 1, ValueError, "kind must be one of"),
        ("gaussian", -1, ValueError, "level must be >= 0"),
        ("gaussian", float("nan"), ValueError, "finite"),
        ("gaussian", "25", TypeError, "real number"),
        ("gaussian", True, TypeError, "real number"),
        ("poisson_peak", 0, ValueError, "> 0"),
        ("salt_pepper", 1.5, ValueError, r"\[0, 1\]"),
    ],
)
def test_bad_levels_and_kinds_are_rejected(kind, level, exc, match):
    with pytest.raises(exc, match=match):
        add_noise(np.zeros((8, 8)), kind, level)


def test_bad_images_and_rng_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        add_noise(np.array([[0.1, np.nan], [0.2, 0.3]]), "gaussian", 5)
    with pytest.raises(ValueError, match="floating-point"):
        add_noise(np.zeros((8, 8), dtype=np.uint8), "gaussian", 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_noise(np.full((8, 8), 255.0), "poisson", 2)
    with pytest.raises(ValueError, match=">= 0"):
        add_noise(np.full((8, 8), -0.1), "poisson_peak", 10)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        add_noise(np.zeros(8), "gaussian", 5)
    with pytest.raises(TypeError, match="rng"):
        add_noise(np.zeros((8, 8)), "gaussian", 5, rng="seed")
    with pytest.raises(ValueError, match="non-negative"):
        add_noise(np.zeros((8, 8)), "gaussian", 5, rng=-1)
    with pytest.raises(ValueError, match="channel_axis"):
        add_noise(np.zeros((8, 8)), "spatial_gaussian", 5, channel_axis=2)


def test_estimate_noise_sigma_recovers_the_added_level():
    from skimage import data

    clean = data.camera()[100:228, 100:228].astype(np.float64) / 255.0
    for sigma in (15, 50):
        est = estimate_noise_sigma(add_noise(clean, "gaussian", sigma, rng=0))
        assert abs(est - sigma / 255) < 0.15 * sigma / 255
    rgb = data.astronaut()[:96, :96].astype(np.float64) / 255.0
    est = estimate_noise_sigma(add_noise(rgb, "gaussian", 25, rng=0), channel_axis=-1)
    assert abs(est - 25 / 255) < 0.15 * 25 / 255
    with pytest.raises(ValueError, match="NaN"):
        estimate_noise_sigma(np.full((8, 8), np.nan))


def test_model_names_and_clip_defaults():
    assert list(NOISE_MODELS) == ["gaussian", "poisson", "poisson_peak", "spatial_gaussian", "speckle", "salt_pepper"]
    assert set(noise.DEFAULT_CLIP) == set(NOISE_MODELS)
    assert not noise.DEFAULT_CLIP["gaussian"] and not noise.DEFAULT_CLIP["spatial_gaussian"]
    assert noise.DEFAULT_CLIP["poisson"] and noise.DEFAULT_CLIP["poisson_peak"]


def test_channel_axis_position_does_not_change_the_noise_structure():
    clean = np.full((3, 32, 40), 0.5)
    first = add_noise(clean, "spatial_gaussian", 50, rng=3, channel_axis=0)
    last = add_noise(np.moveaxis(clean, 0, -1), "spatial_gaussian", 50, rng=3, channel_axis=-1)
    # same draws in a different memory layout, but the same per-channel 3x3 blur
    for n in (first - 0.5, np.moveaxis(last, -1, 0) - 0.5):
        for c in range(3):
            assert np.corrcoef(n[c, :, :-1].ravel(), n[c, :, 1:].ravel())[0, 1] > 0.5
    sp = add_noise(clean, "salt_pepper", 0.2, rng=3, channel_axis=0)
    hit = np.any(sp != 0.5, axis=0)
    assert hit.sum() == 256 and np.all(sp[:, hit].min(axis=0) == sp[:, hit].max(axis=0))


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(2, 12), min_size=2, max_size=4).map(tuple),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    kind=st.sampled_from(sorted(NOISE_MODELS)),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_shape_and_float_dtype(shape, dtype, kind, seed):
    clean = np.random.default_rng(seed).random(shape).astype(dtype)
    out = add_noise(clean, kind, LEVELS[kind], rng=seed, clip=True)
    assert out.shape == clean.shape
    assert out.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, add_noise(clean, kind, LEVELS[kind], rng=seed, clip=True))


def test_noises_can_be_chained_on_an_unclipped_image():
    clean = np.full((32, 32), 0.9)
    shot = add_noise(clean, "poisson_peak", 20, rng=0, clip=False)
    assert shot.max() > 1  # unclipped
    both = add_noise(shot, "gaussian", 5, rng=1)
    np.testing.assert_array_equal(both, shot + np.random.default_rng(1).normal(0, 5 / 255, shot.shape))
