"""The CPU inference copy with fused convolutions computes what the unfused network computes."""

import pytest
import torch
from torch import nn

from napari_clipdenoise.inference.cpu_fusion import FusedConv2d, fuse_convolutions, fusion_supported
from napari_clipdenoise.inference.prepare import fold_batch_norms, prepare_network, prepared_network
from napari_clipdenoise.inference.tile_grid import TileGeometry
from napari_clipdenoise.model.testing import random_network

CPU = torch.device("cpu")

needs_fusion = pytest.mark.skipif(
    not fusion_supported(torch.float32), reason="this torch build has no fused oneDNN convolution"
)


def _count(network: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in network.modules())


@needs_fusion
@pytest.mark.parametrize("in_channels", [1, 3])
def test_fused_copy_matches_the_network_in_fp32(in_channels, one_torch_thread):
    network = random_network(in_channels, seed=2)
    fused = prepare_network(network, CPU, "fp32", channels_last=True)  # fused by default on the CPU
    # every encoder conv (3 stem + 13 bottlenecks x 3 + 3 shortcuts) and both convs of 5 decoder blocks
    assert _count(fused, FusedConv2d) == 45 + 10
    assert _count(fused, nn.BatchNorm2d) == 0 and _count(fused, nn.LeakyReLU) == 0
    assert _count(network, FusedConv2d) == 0 and _count(network, nn.BatchNorm2d) > 0, "the user's network is untouched"
    x = torch.rand(2, in_channels, 64, 80, generator=torch.Generator().manual_seed(0))
    geometry = TileGeometry(((0, 16), (32, 48)), (128, 160))
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), network(x), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(fused(x, geometry=geometry), network(x, geometry=geometry), atol=2e-5, rtol=1e-4)


@needs_fusion
def test_fused_bf16_is_as_close_to_fp32_as_unfused_bf16(one_torch_thread):
    """Fusing removes the rounding between a convolution and its activation; it must not add error."""
    network = random_network(3, seed=3)
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = network(x)
        errors = {
            fuse: (prepare_network(network, CPU, "bf16", True, fuse=fuse)(x).float() - reference).pow(2).mean().item()
            for fuse in (False, True)
        }
    assert errors[True] <= errors[False] * 1.05, errors


def test_fusion_can_be_switched_off(monkeypatch):
    network = random_network(3)
    assert _count(prepare_network(network, CPU, "fp32", channels_last=True, fuse=False), FusedConv2d) == 0
    monkeypatch.setenv("CLIPDENOISE_CPU_FUSION", "0")
    assert _count(prepare_network(network, CPU, "fp32", channels_last=True), FusedConv2d) == 0
    assert _count(prepared_network(network, CPU, "fp32", channels_last=True), FusedConv2d) == 0


def test_fusing_needs_folded_batch_norms():
    with pytest.raises(ValueError, match="fold_batch_norms"):
        fuse_convolutions(random_network(3))
    network = random_network(3)
    fold_batch_norms(network)
    assert fuse_convolutions(network) == 55


def test_only_plain_convolutions_are_fused():
    with pytest.raises(ValueError, match="ungrouped"):
        FusedConv2d(nn.Conv2d(4, 4, 3, groups=2))


def test_networks_inside_wrappers_are_fused_whole():
    """The dask workers wrap the network; its encoder must be fused like the unwrapped one's."""
    wrapper = nn.Module()
    wrapper.inner = random_network(3)
    fold_batch_norms(wrapper)
    assert fuse_convolutions(wrapper) == 55
    assert _count(wrapper, nn.BatchNorm2d) == 0 and _count(wrapper, nn.LeakyReLU) == 0
