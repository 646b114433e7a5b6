"""denoise(): shapes, axes, channels, dtypes, normalisation, lazy inputs, bad inputs, tiling accuracy."""

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_clipdenoise import denoise, plan_denoise
from napari_clipdenoise.errors import DenoiseCancelled
from napari_clipdenoise.inference.axes import guess_axes, parse_axes
from napari_clipdenoise.inference.options import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE

FAST = dict(tile_size=None, precision="fp32")


def test_default_tiling_matches_whole_image_on_1000x1500_rgb(rgb_model):
    """Acceptance: real architecture, seeded random weights, default tile size and overlap."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (1000, 1500), anti_aliasing=True).astype(np.float32)
    image = np.clip(image + np.random.default_rng(0).normal(0, 0.1, image.shape).astype(np.float32), 0, 1)
    whole = denoise(image, rgb_model, tile_size=None, precision="fp32")
    tiled = denoise(image, rgb_model, precision="fp32")  # defaults: DEFAULT_TILE_SIZE / DEFAULT_OVERLAP
    assert whole.std() > 0.1, "the random model's output has a real dynamic range"
    assert np.abs(tiled - whole).max() <= 5e-3


def test_tiled_matches_whole_image_with_several_tiles_each_way(rgb_model):
    """Same tolerance where every pixel lies in a multi-tile overlap (the default overlap, smaller tiles)."""
    image = np.random.default_rng(3).random((600, 700, 3), dtype=np.float32)
    whole = denoise(image, rgb_model, tile_size=None, precision="fp32")
    tiled = denoise(image, rgb_model, tile_size=DEFAULT_OVERLAP + 128, overlap=DEFAULT_OVERLAP, precision="fp32")
    assert np.abs(tiled - whole).max() <= 5e-3


DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.float16]


@st.composite
def images(draw):
    dtype = draw(st.sampled_from(DTYPES))
    height, width = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    layout = draw(st.sampled_from(["YX", "YXC", "ZYX", "CYX"]))
    shape = {"YX": (height, width), "YXC": (height, width, 3), "ZYX": (2, height, width), "CYX": (2, height, width)}[
        layout
    ]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = rng.random(shape)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        values = values * min(info.max, 60000) + (0 if info.min == 0 else -100)
    return values.astype(dtype), layout


@given(case=images(), tile=st.sampled_from([None, 288, 320, 512]))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_shape_axes_and_dtype(rgb_model, case, tile):
    image, axes = case
    out = denoise(image, rgb_model, axes=axes, tile_size=tile, overlap=256, precision="fp32")
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    if tile is not None:
        whole = denoise(image, rgb_model, axes=axes, tile_size=None, precision="fp32", output_dtype=np.float32)
        tiled = denoise(
            image, rgb_model, axes=axes, tile_size=tile, overlap=256, precision="fp32", output_dtype=np.float32
        )
        plan = plan_denoise(image, 3, axes=axes)
        span = max(g.scale.high - g.scale.low for g in plan.groups)
        assert np.abs(tiled - whole).max() <= 5e-3 * span


def test_axes_are_guessed_and_reported():
    assert guess_axes((64, 64)) == "YX"
    assert guess_axes((64, 64, 3)) == "YXC"
    assert guess_axes((5, 64, 64)) == "ZYX"
    assert guess_axes((2, 5, 64, 64)) == "CZYX"
    assert guess_axes((20, 5, 64, 64)) == "TZYX"
    assert guess_axes((5, 64, 64, 4)) == "ZYXC"
    assert guess_axes((64, 64, 3), rgb=False) == "ZYX"
    plan = plan_denoise(np.zeros((4, 32, 32), np.uint16), 3)
    assert plan.axes_guessed and plan.layout.axes == "ZYX"
    assert any("ZYX (guessed)" in note for note in plan.notes)


def test_rgb_to_rgb_model_is_one_pass_and_alpha_is_kept(rgb_model):
    rgba = np.random.default_rng(0).integers(0, 256, (40, 50, 4), dtype=np.uint8)
    out = denoise(rgba, rgb_model, **FAST)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    rgb_only = denoise(rgba[..., :3], rgb_model, **FAST)
    np.testing.assert_array_equal(out[..., :3], rgb_only)


def test_grayscale_to_rgb_model_is_replicated_and_averaged(rgb_model):
    import torch

    gray = np.random.default_rng(1).random((32, 48), dtype=np.float32)
    out = denoise(gray, rgb_model, **FAST)
    x = torch.from_numpy(np.repeat(gray[None, None], 3, axis=1))
    with torch.no_grad():
        expected = rgb_model.network(x)[0].mean(0).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_grayscale_to_one_channel_model(gray_model):
    import torch

    gray = np.random.default_rng(2).random((32, 32), dtype=np.float32)
    out = denoise(gray, gray_model, **FAST)
    with torch.no_grad():
        expected = gray_model.network(torch.from_numpy(gray[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_channels_and_planes_are_processed_independently(rgb_model):
    rng = np.random.default_rng(3)
    stack = (rng.random((2, 3, 40, 40)) * 4000).astype(np.uint16)  # CZYX
    out = denoise(stack, rgb_model, axes="CZYX", **FAST)
    assert out.shape == stack.shape and out.dtype == np.uint16
    # channel 1 is normalised and denoised on its own, plane by plane
    alone = denoise(stack[1], rgb_model, axes="ZYX", **FAST)
    np.testing.assert_array_equal(out[1], alone)
    plane = denoise(stack[1, 2], rgb_model, axes="YX", intensity_range=_range_of(stack[1]), **FAST)
    np.testing.assert_array_equal(out[1, 2], plane)


def _range_of(values):
    plan = plan_denoise(values, 3, axes="ZYX")
    return (plan.groups[0].scale.low, plan.groups[0].scale.high)


def test_normalisation_choices():
    u8 = np.random.default_rng(0).integers(10, 200, (20, 20), dtype=np.uint8)
    assert plan_denoise(u8, 3).groups[0].scale.low == 0 and plan_denoise(u8, 3).groups[0].scale.high == 255
    u16 = np.random.default_rng(0).integers(100, 5000, (20, 20), dtype=np.uint16)
    scale = plan_denoise(u16, 3).groups[0].scale
    assert 100 <= scale.low < 200 and 4900 < scale.high <= 5000
    f = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    assert plan_denoise(f, 3).groups[0].scale.high == 1.0
    ct = plan_denoise(u16.astype(np.int16) - 1024, 1, intensity_range=(-1024, 3072)).groups[0].scale
    assert (ct.low, ct.high) == (-1024, 3072)
    with pytest.raises(ValueError, match="intensity_range"):
        plan_denoise(f, 3, intensity_range=(1, 1))
    with pytest.raises(ValueError, match="intensity_range"):
        plan_denoise(f, 3, intensity_range="minmax")


def test_integer_output_is_rounded_and_clipped(rgb_model):
    image = np.full((32, 32), 250, np.uint8)
    image[::2, ::3] = 5
    out = denoise(image, rgb_model, **FAST)
    as_float = denoise(image, rgb_model, output_dtype=np.float32, **FAST)
    assert out.dtype == np.uint8 and as_float.dtype == np.float32
    np.testing.assert_array_equal(out, np.clip(np.rint(as_float), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("value, dtype", [(7, np.uint16), (4000000001, np.uint32), (0.25, np.float32), (-3, np.int8)])
def test_constant_image_comes_back_unchanged(rgb_model, value, dtype):
    image = np.full((3, 20, 30), value, dtype)
    out = denoise(image, rgb_model, **FAST)
    np.testing.assert_array_equal(out, image)
    assert out.dtype == image.dtype


def test_lazy_dask_and_zarr_inputs(rgb_model, tmp_path):
    da = pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    volume = (np.random.default_rng(4).random((3, 48, 40)) * 1000).astype(np.uint16)
    expected = denoise(volume, rgb_model, **FAST)
    lazy = da.from_array(volume, chunks=(1, 48, 40))
    np.testing.assert_array_equal(denoise(lazy, rgb_model, **FAST), expected)
    store = zarr.open_array(tmp_path / "v.zarr", mode="w", shape=volume.shape, chunks=(1, 48, 40), dtype=volume.dtype)
    store[:] = volume
    out = zarr.open_array(tmp_path / "out.zarr", mode="w", shape=volume.shape, chunks=(1, 48, 40), dtype=volume.dtype)
    result = denoise(store, rgb_model, out=out, **FAST)
    assert result is out
    np.testing.assert_array_equal(out[:], expected)


def test_progress_reaches_total_and_cancel_stops(rgb_model):
    stack = np.random.default_rng(5).random((3, 64, 64)).astype(np.float32)
    calls = []
    denoise(stack, rgb_model, tile_size=32, overlap=16, precision="fp32", progress=lambda d, t: calls.append((d, t)))
    totals = {t for _, t in calls}
    assert len(totals) == 1 and calls[0][0] == 0 and calls[-1][0] == calls[-1][1] == 3 * 9
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    stop = threading.Event()

    def progress(done, total):
        if done >= 2:
            stop.set()

    with pytest.raises(DenoiseCancelled):
        denoise(stack, rgb_model, tile_size=32, overlap=16, precision="fp32", progress=progress, cancel=stop)


@pytest.mark.parametrize(
    "image, axes, error, message",
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), None, ValueError, "NaN"),
        (np.array([[np.inf, 1.0], [0.0, 1.0]], np.float32), None, ValueError, "infinite"),
        (np.zeros((0, 10), np.float32), None, ValueError, "empty"),
        (np.zeros((10, 0, 3), np.uint8), None, ValueError, "empty"),
        (np.zeros(10, np.float32), None, ValueError, "at least 2 dimensions"),
        (np.zeros((10, 10), bool), None, TypeError, "bool|astype"),
        (np.zeros((10, 10), np.complex64), None, TypeError, "complex64"),
        (np.zeros((10, 10), object), None, TypeError, "object"),
        (np.zeros((10, 10), "U3"), None, TypeError, "<U3"),
        ([[1, 2], [3, 4]], None, TypeError, "list"),
        (np.zeros((4, 10, 10), np.float32), "YX", ValueError, "2 letters but the image has 3"),
        (np.zeros((4, 10, 10), np.float32), "ZYY", ValueError, "repeats Y"),
        (np.zeros((4, 10, 10), np.float32), "ZCX", ValueError, "both 'Y' and 'X'"),
        (np.zeros((4, 10, 10), np.float32), "Z1X", ValueError, "letters only"),
        (np.zeros((2, 10, 10, 3), np.float32), "CYXS", ValueError, "both 'C' and 'S'"),
    ],
)
def test_bad_inputs_get_clear_errors(rgb_model, image, axes, error, message):
    with pytest.raises(error, match=message):
        denoise(image, rgb_model, axes=axes, **FAST)


def test_nan_in_a_lazy_plane_is_caught(rgb_model):
    da = pytest.importorskip("dask.array")
    volume = np.zeros((40, 16, 16), np.float32) + np.linspace(0, 1, 16, dtype=np.float32)
    volume[37, 3, 3] = np.nan  # a plane the normalisation sample does not read
    with pytest.raises(ValueError, match="NaN"):
        denoise(da.from_array(volume, chunks=(1, 16, 16)), rgb_model, **FAST)


def test_bad_options(rgb_model):
    image = np.zeros((16, 16), np.float32)
    image[0, 0] = 1
    with pytest.raises(ValueError, match="device"):
        denoise(image, rgb_model, device="tpu", **{k: v for k, v in FAST.items()})
    with pytest.raises(ValueError, match="CUDA|cuda"):
        denoise(image, rgb_model, device="cuda", tile_size=None)
    with pytest.raises(ValueError, match="precision"):
        denoise(image, rgb_model, precision="int8", tile_size=None)
    with pytest.raises(ValueError, match="tile_size"):
        denoise(image, rgb_model, tile_size=100)
    with pytest.raises(ValueError, match="batch_size"):
        denoise(image, rgb_model, batch_size=0)
    with pytest.raises(ValueError, match="rgb=True"):
        denoise(np.zeros((16, 16, 2), np.float32), rgb_model, rgb=True)
    with pytest.raises(ValueError, match="out has shape"):
        denoise(image, rgb_model, out=np.zeros((3, 3)), **FAST)


def test_parse_axes_layout():
    layout = parse_axes("tczyx", (2, 3, 4, 5, 6))
    assert layout.axes == "TCZYX" and layout.channel == 1 and layout.planes == (0, 2) and (layout.y, layout.x) == (3, 4)
    with pytest.raises(TypeError):
        parse_axes(5, (2, 2))


def test_defaults_are_documented():
    assert DEFAULT_TILE_SIZE % 16 == 0 and 0 < DEFAULT_OVERLAP < DEFAULT_TILE_SIZE
