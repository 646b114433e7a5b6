"""Tile upsampling on the whole image's grid, checked against F.interpolate of the whole map."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from napari_clipdenoise.inference.tile_grid import TileGeometry
from napari_clipdenoise.model.network import _upsample_concat


def _tile_and_reference(h, w, top, left, th, tw, factor, channels_last, seed=0):
    """A global map at 1/(2*factor) resolution, one tile of it, and the whole map upsampled by F.interpolate."""
    generator = torch.Generator().manual_seed(seed)
    whole = torch.rand(1, 5, h, w, generator=generator, dtype=torch.float64)
    reference = F.interpolate(whole, scale_factor=2, mode="bilinear", align_corners=True)
    tile = whole[:, :, top : top + th, left : left + tw]
    skip = torch.rand(1, 2, 2 * th, 2 * tw, generator=generator, dtype=torch.float64)
    if channels_last:
        tile, skip = (t.contiguous(memory_format=torch.channels_last) for t in (tile, skip))
    # full-resolution origin and size: output pixels are ``factor`` full-resolution pixels wide
    geometry = TileGeometry(((2 * top * factor, 2 * left * factor),), (2 * h * factor, 2 * w * factor))
    return tile, skip, geometry, reference


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(2, 24),
    w=st.integers(2, 24),
    data=st.data(),
    factor=st.sampled_from([1, 2, 4, 8]),
    channels_last=st.booleans(),
)
def test_a_tile_upsamples_like_the_whole_map_away_from_its_edges(h, w, data, factor, channels_last):
    th, tw = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
    top, left = data.draw(st.integers(0, h - th)), data.draw(st.integers(0, w - tw))
    tile, skip, geometry, reference = _tile_and_reference(h, w, top, left, th, tw, factor, channels_last)
    with torch.inference_mode():
        joined = _upsample_concat(tile, skip, geometry, factor)
    assert joined.shape == (1, 7, 2 * th, 2 * tw)
    assert torch.equal(joined[:, 5:], skip), "the skip channels follow the upsampled ones unchanged"
    up = joined[:, :5]
    expected = reference[:, :, 2 * top : 2 * (top + th), 2 * left : 2 * (left + tw)]
    # The first even and last odd row/column need a neighbour outside the tile: they clamp to the edge
    # unless the tile sits on the image's border (where the whole map clamps the same way).
    r0 = 0 if top == 0 else 1
    r1 = 2 * th if top + th == h else 2 * th - 1
    c0 = 0 if left == 0 else 1
    c1 = 2 * tw if left + tw == w else 2 * tw - 1
    torch.testing.assert_close(up[..., r0:r1, c0:c1], expected[..., r0:r1, c0:c1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_batch_of_tiles_each_gets_its_own_grid(dtype):
    h, w = 20, 24
    tile_a, skip_a, geom_a, reference = _tile_and_reference(h, w, 0, 4, 10, 12, 2, True, seed=3)
    tile_b, skip_b, geom_b, _ = _tile_and_reference(h, w, 10, 12, 10, 12, 2, True, seed=3)
    batch = torch.cat([tile_a, tile_b]).to(dtype).contiguous(memory_format=torch.channels_last)
    skips = torch.cat([skip_a, skip_b]).to(dtype)
    geometry = TileGeometry(geom_a.origins + geom_b.origins, geom_a.full_size)
    with torch.inference_mode():
        joined = _upsample_concat(batch, skips, geometry, 2)
    assert joined.is_contiguous(memory_format=torch.channels_last)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2
    interior = (slice(None), slice(None), slice(1, 19), slice(1, 23))
    expected_b = reference[:, :, 20:40, 24:48]
    torch.testing.assert_close(joined[1:, :5][interior].double(), expected_b[interior], atol=tolerance, rtol=0)
    expected_a = reference[:, :, 0:20, 8:32]
    torch.testing.assert_close(joined[:1, :5][interior].double(), expected_a[interior], atol=tolerance, rtol=0)


def test_upsampling_stays_differentiable_when_gradients_are_needed():
    """With the whole map as the one tile, values and gradients equal F.interpolate's."""
    tile, skip, geometry, _ = _tile_and_reference(9, 14, 0, 0, 9, 14, 1, False)
    weights = torch.rand(1, 7, 18, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = tile.clone().requires_grad_(True)
    (_upsample_concat(ours, skip, geometry, 1) * weights).sum().backward()
    theirs = tile.clone().requires_grad_(True)
    up = F.interpolate(theirs, scale_factor=2, mode="bilinear", align_corners=True)
    (torch.cat([up, skip], dim=1) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-12, rtol=0)
    with torch.inference_mode():
        fast = _upsample_concat(tile, skip, geometry, 1)
    torch.testing.assert_close(fast, torch.cat([up.detach(), skip], dim=1), atol=1e-12, rtol=0)
