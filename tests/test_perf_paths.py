"""Fast paths keep the results: BN folding, low precision, per-tile padding, streamed stitching, bounded memory.

Behaviour only; speed and memory figures live in benchmarks/run.py and BENCHMARKS.md.
"""

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_clipdenoise import denoise
from napari_clipdenoise.inference.prepare import fold_batch_norms, prepare_network, prepared_network
from napari_clipdenoise.inference.tile_grid import plan_tiles, reflect_indices
from napari_clipdenoise.inference.tiling import tiled_inference
from napari_clipdenoise.model.registry import DenoisingModel
from napari_clipdenoise.model.testing import random_network


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.fixture(scope="module")
def noisy_astronaut():
    from skimage import data

    clean = data.astronaut()[200:296, 180:276].astype(np.float32) / 255.0
    noise = np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    return np.clip(clean + noise, 0, 1)


@given(length=st.integers(1, 40), extra=st.integers(0, 100))
@settings(max_examples=100, deadline=None)
def test_reflect_indices_match_numpy_reflect_padding(length, extra):
    values = np.arange(length) * 10
    np.testing.assert_array_equal(
        values[reflect_indices(length, length + extra)], np.pad(values, (0, extra), mode="reflect")
    )


@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    tile=st.sampled_from([16, 32, 64, 128]),
    overlap=st.integers(0, 100),
)
@settings(max_examples=60, deadline=None)
def test_blend_weights_are_a_partition_of_unity(height, width, tile, overlap):
    plan = plan_tiles(height, width, tile, min(overlap, tile - 1))
    total = np.zeros((plan.padded_height, plan.padded_width))
    wy, wx = plan.blend_weights(0), plan.blend_weights(1)
    for y, x in plan.boxes:
        total[y : y + plan.tile_height, x : x + plan.tile_width] += np.outer(wy[y], wx[x])
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_folding_batch_norm_keeps_fp32_output_and_leaves_the_model_untouched():
    network = random_network(3, seed=1)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    prepared = prepare_network(network, torch.device("cpu"), "fp32", channels_last=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == 45
    after = network.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected, got = network(x), prepared(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_folding_skips_batch_norm_in_training_mode():
    network = random_network(1, seed=2).train()
    assert fold_batch_norms(network) == 0
    assert fold_batch_norms(network.eval()) == 45


def test_prepared_network_is_cached_until_the_weights_change():
    network = random_network(1, seed=3)
    cpu = torch.device("cpu")
    first = prepared_network(network, cpu, "bf16", True)
    assert prepared_network(network, cpu, "bf16", True) is first
    assert next(first.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        network.last.weight.mul_(2.0)
    assert prepared_network(network, cpu, "bf16", True) is not first


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_fast_path_matches_fp32_whole_image_on_a_real_photograph(noisy_astronaut, precision):
    """Acceptance: default (and explicit bf16) path vs fp32 whole-image output, PSNR >= 45 dB on [0, 1]."""
    model = DenoisingModel(random_network(3), "random")
    reference = denoise(noisy_astronaut, model, tile_size=None, precision="fp32")
    assert reference.std() > 0.05
    fast = denoise(noisy_astronaut, model, precision=precision)
    assert fast.dtype == np.float32 and fast.shape == noisy_astronaut.shape
    assert _psnr(fast, reference) >= 45.0


def test_rows_are_streamed_in_order_in_bands_no_taller_than_a_tile():
    plane = np.random.default_rng(0).integers(0, 60000, (1, 200, 90), dtype=np.uint16)
    bands = []
    out = np.zeros((1, 200, 90), np.float32)

    def sink(start, stop, rows):
        bands.append((start, stop))
        out[:, start:stop] = rows

    returned = tiled_inference(
        lambda x: x * 2, plane, tile_size=64, overlap=16, sink=sink, transform=lambda t: t.astype(np.float32) / 60000
    )
    assert returned is None
    assert bands[0][0] == 0 and bands[-1][1] == 200
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:], strict=False)), "consecutive, each row once"
    assert max(stop - start for start, stop in bands) <= 64
    np.testing.assert_allclose(out, plane.astype(np.float32) / 60000 * 2, atol=1e-6)


class _TinyNet(torch.nn.Module):
    """A cheap stand-in network (one 3x3 conv) so the memory test runs a 1 Mpx image quickly."""

    in_channels = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)

    def forward(self, x):
        return self.conv(x)


def test_memory_is_bounded_by_the_tile_not_the_image():
    """A 2048 x 2048 uint16 plane in 128 px tiles: numpy allocations stay far below one float32 copy of it.

    (A fixed intensity range skips the percentile estimate, whose sample (copied once) is bounded at 1 Mpx per plane.)
    """
    image = np.random.default_rng(0).integers(0, 60000, (2048, 2048), dtype=np.uint16)
    model = DenoisingModel(_TinyNet().eval(), "tiny")
    out = np.empty_like(image)
    denoise(
        image, model, tile_size=128, overlap=16, precision="fp32", intensity_range=(0, 60000), out=out
    )  # warm caches
    tracemalloc.start()
    try:
        denoise(image, model, tile_size=128, overlap=16, precision="fp32", intensity_range=(0, 60000), out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float_plane = image.size * 4
    assert peak < float_plane / 4, (
        f"numpy peak {peak / 2**20:.1f} MiB for a {float_plane / 2**20:.0f} MiB float32 plane"
    )
    whole = denoise(image, model, tile_size=None, precision="fp32", intensity_range=(0, 60000))
    assert np.abs(out.astype(np.int64) - whole).max() <= 1, "streamed tiles give the whole-image result, in ``out``"


def test_fast_upsampling_keeps_the_whole_image_grid_for_tiles():
    """The prepared copy's decoder samples tiles exactly like the reference network does (fp32)."""
    from napari_clipdenoise.inference.tile_grid import TileGeometry

    network = random_network(3, seed=4)
    prepared = prepare_network(network, torch.device("cpu"), "fp32", channels_last=True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    geometry = TileGeometry(((32, 48), (96, 0)), (160, 176))
    with torch.inference_mode():
        expected, got = network(x, geometry=geometry), prepared(x, geometry=geometry)
        untiled = network(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (expected - untiled).abs().max() > 1e-3, "the geometry really changes the sampling grid"


def test_prepared_copies_for_several_precisions_are_kept():
    network = random_network(1, seed=5)
    cpu = torch.device("cpu")
    bf16, fp32 = prepared_network(network, cpu, "bf16", True), prepared_network(network, cpu, "fp32", True)
    assert prepared_network(network, cpu, "bf16", True) is bf16
    assert prepared_network(network, cpu, "fp32", True) is fp32


def test_denoising_in_place_into_the_input_gives_the_same_result():
    """Rows are written while later tiles are still read: they only read rows below the finished ones."""
    image = np.random.default_rng(1).integers(0, 60000, (2, 203, 150), dtype=np.uint16)
    model = DenoisingModel(_TinyNet().eval(), "tiny")
    options = dict(axes="ZYX", tile_size=64, overlap=16, precision="fp32", intensity_range=(0, 60000))
    expected = denoise(image, model, **options)
    in_place = image.copy()
    returned = denoise(in_place, model, out=in_place, **options)
    assert returned is in_place
    np.testing.assert_array_equal(in_place, expected)
