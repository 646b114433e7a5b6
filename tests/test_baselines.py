"""Classical baselines: they remove noise on real photographs, gray and RGB, with clear errors."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from napari_clipdenoise import baselines
from napari_clipdenoise.baselines import CLASSICAL_METHODS, available_methods, classical_denoise
from napari_clipdenoise.metrics import psnr
from napari_clipdenoise.noise import add_noise

SKIMAGE_METHODS = ["nl_means", "tv", "wavelet"]


@pytest.fixture(scope="module")
def camera_pair():
    from skimage import data

    clean = data.camera()[160:256, 200:296].astype(np.float32) / 255.0  # 96 x 96, textured
    noisy = np.clip(add_noise(clean, "gaussian", 25, rng=0), 0, 1)
    return clean, noisy


@pytest.fixture(scope="module")
def astronaut_pair():
    from skimage import data

    clean = data.astronaut()[20:84, 180:244].astype(np.float32) / 255.0  # 64 x 64 x 3
    noisy = np.clip(add_noise(clean, "gaussian", 25, rng=1), 0, 1)
    return clean, noisy


def test_method_listing():
    assert available_methods() == list(CLASSICAL_METHODS)
    assert set(SKIMAGE_METHODS) <= set(CLASSICAL_METHODS)
    assert ("bm3d" in CLASSICAL_METHODS) == (importlib.util.find_spec("bm3d") is not None)
    assert all(isinstance(v, str) and v for v in CLASSICAL_METHODS.values())


@pytest.mark.parametrize("method", SKIMAGE_METHODS)
@pytest.mark.parametrize("sigma", [25 / 255, None])
def test_gray_baselines_reduce_the_error(camera_pair, method, sigma):
    clean, noisy = camera_pair
    before = noisy.copy()
    out = classical_denoise(noisy, method, sigma=sigma)
    assert out.shape == clean.shape and out.dtype == np.float32
    np.testing.assert_array_equal(noisy, before)  # input untouched
    assert psnr(clean, out) > psnr(clean, noisy) + 3.0


@pytest.mark.parametrize("method", SKIMAGE_METHODS)
def test_rgb_baselines_reduce_the_error(astronaut_pair, method):
    clean, noisy = astronaut_pair
    out = classical_denoise(noisy, method, channel_axis=-1)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert psnr(clean, out) > psnr(clean, noisy) + 2.0
    # channel axis first gives the same result, moved
    first = classical_denoise(np.moveaxis(noisy, -1, 0), method, sigma=25 / 255, channel_axis=0)
    np.testing.assert_allclose(
        np.moveaxis(first, 0, -1), classical_denoise(noisy, method, sigma=25 / 255, channel_axis=-1), atol=1e-6
    )


def test_stronger_sigma_smooths_more(camera_pair):
    _, noisy = camera_pair
    weak = classical_denoise(noisy, "tv", sigma=5 / 255)
    strong = classical_denoise(noisy, "tv", sigma=50 / 255)
    assert np.abs(np.diff(strong, axis=1)).mean() < np.abs(np.diff(weak, axis=1)).mean()


def test_zero_sigma_returns_the_input(camera_pair):
    _, noisy = camera_pair
    out = classical_denoise(noisy, "nl_means", sigma=0)
    np.testing.assert_array_equal(out, noisy)
    assert out is not noisy


def test_unknown_method_lists_the_available_ones(camera_pair):
    with pytest.raises(ValueError, match="nl_means") as info:
        classical_denoise(camera_pair[1], "median")
    assert "'median'" in str(info.value)


def test_missing_bm3d_says_how_to_install(camera_pair, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` fail, installed or not
    monkeypatch.delitem(CLASSICAL_METHODS, "bm3d", raising=False)
    with pytest.raises(ImportError, match="pip install bm3d") as info:
        classical_denoise(camera_pair[1], "bm3d", sigma=0.1)
    assert "non-commercial" in str(info.value)


def test_bm3d_wrapper_passes_sigma_and_uses_the_colour_variant(camera_pair, astronaut_pair, monkeypatch):
    calls = []
    fake = types.ModuleType("bm3d")
    fake.bm3d = lambda z, sigma_psd: calls.append(("gray", z.shape, sigma_psd)) or z * 0.5
    fake.bm3d_rgb = lambda z, sigma_psd: calls.append(("rgb", z.shape, sigma_psd)) or z * 0.5
    monkeypatch.setitem(sys.modules, "bm3d", fake)
    gray = classical_denoise(camera_pair[1], "bm3d", sigma=0.1)
    rgb = classical_denoise(np.moveaxis(astronaut_pair[1], -1, 0), "bm3d", sigma=0.2, channel_axis=0)
    assert calls == [("gray", (96, 96), 0.1), ("rgb", (64, 64, 3), 0.2)]
    assert gray.dtype == np.float32 and rgb.shape == (3, 64, 64)
    np.testing.assert_allclose(rgb, np.moveaxis(astronaut_pair[1], -1, 0) * 0.5, rtol=1e-6)


def test_real_bm3d_when_installed(camera_pair):
    pytest.importorskip("bm3d")
    clean, noisy = camera_pair
    assert psnr(clean, classical_denoise(noisy, "bm3d", sigma=25 / 255)) > psnr(clean, noisy) + 3.0


@pytest.mark.parametrize(
    ("image", "kwargs", "exc", "match"),
    [
        (np.zeros((16, 16), dtype=np.uint8), {}, ValueError, "floating-point"),
        (np.full((16, 16), np.nan), {"sigma": 0.1}, ValueError, "NaN"),
        (np.zeros((16, 16)), {"sigma": -0.1}, ValueError, "sigma must be a finite number >= 0"),
        (np.zeros((16, 16)), {"sigma": "0.1"}, TypeError, "sigma"),
        (np.zeros((16, 16)), {"sigma": 0.1, "channel_axis": -1}, ValueError, "channel_axis"),
        (np.zeros((2, 4, 16, 16)), {"sigma": 0.1}, ValueError, "2D"),
    ],
)
def test_bad_inputs_are_rejected(image, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        classical_denoise(image, "tv", **kwargs)


def test_module_imports_no_torch_or_qt():
    import subprocess

    code = (
        "import sys, napari_clipdenoise.noise, napari_clipdenoise.metrics, napari_clipdenoise.baselines;"
        "bad = [m for m in ('torch', 'qtpy', 'PyQt6', 'napari') if m in sys.modules];"
        "sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert baselines.BM3D_INSTALL_HINT.startswith("BM3D")
