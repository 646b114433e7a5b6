"""The network against METHOD.md: parameter counts, size rule, augmentation, BN modes, reference parity."""

import pytest
import torch
from reference_network import RefCLIPDenoising

from napari_clipdenoise import load_model
from napari_clipdenoise.inference.tile_grid import TileGeometry
from napari_clipdenoise.model.checkpoints import load_reference_checkpoint
from napari_clipdenoise.model.network import CLIPDenoiser, NetworkConfig, count_trainable_parameters
from napari_clipdenoise.model.testing import random_network, reference_state_dict, write_reference_checkpoint


def test_trainable_parameter_counts_match_the_paper():
    assert count_trainable_parameters(CLIPDenoiser()) == 10_988_928
    assert count_trainable_parameters(CLIPDenoiser(NetworkConfig(in_channels=1, out_channels=1))) == 10_987_779
    network = CLIPDenoiser()
    per_block = [sum(p.numel() for p in block.parameters()) for block in network.up_path]
    assert per_block == [7_077_888, 2_949_120, 737_280, 147_456, 75_456]
    assert network.last.weight.numel() == 1_728
    assert sum(p.numel() for p in network.encoder.parameters()) == 8_562_528
    assert not any(p.requires_grad for p in network.encoder.parameters())


def test_layer4_is_not_built_and_bias_is_off_by_default():
    keys = CLIPDenoiser().state_dict().keys()
    assert not any(".layer4." in k or k.startswith("encoder.layer4") for k in keys)
    assert not any(k.endswith(".bias") and not k.startswith("encoder.") for k in keys)
    assert len(keys) == 341 - 60


@pytest.mark.parametrize("shape", [(1, 3, 40, 64), (1, 3, 64, 8), (1, 3, 17, 32)])
def test_sizes_not_multiple_of_16_are_rejected(shape):
    with pytest.raises(ValueError, match="multiples of 16"):
        CLIPDenoiser()(torch.zeros(shape))


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        CLIPDenoiser(NetworkConfig(in_channels=1, out_channels=1))(torch.zeros(1, 3, 32, 32))


def test_feature_augmentation_only_in_training():
    network = random_network(3, seed=3)
    network.feature_aug_level = 0.05
    network.encoder_bn_mode = "frozen"  # so that train mode differs from eval only by the augmentation
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        network.eval()
        a, b = network(x), network(x)
        network.train()
        c, d = network(x), network(x)
    assert torch.equal(a, b)
    assert not torch.allclose(c, d), "augmentation draws fresh noise every step"
    assert not torch.allclose(a, c)
    network.feature_aug_level = 0.0
    with torch.no_grad():
        e = network(x)
    assert torch.allclose(a, e, atol=1e-6), "frozen BN + no augmentation in train mode equals eval"


def test_encoder_bn_modes_during_training():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    reference = random_network(3, seed=2)
    reference.train()  # the authors' behaviour: BN uses batch statistics and updates running stats
    before = reference.encoder.bn1.running_mean.clone()
    reference(x)
    assert reference.encoder.training
    assert not torch.equal(before, reference.encoder.bn1.running_mean)

    frozen = random_network(3, seed=2)
    frozen.encoder_bn_mode = "frozen"
    frozen.train()
    before = frozen.encoder.bn1.running_mean.clone()
    frozen(x)
    assert not frozen.encoder.training and frozen.up_path.training
    assert torch.equal(before, frozen.encoder.bn1.running_mean)


@pytest.mark.parametrize("in_channels", [3, 1])
def test_reference_checkpoint_parity(tmp_path, in_channels):
    """load_model + .network(x) equals an independent reference implementation to 1e-5."""
    path = tmp_path / "net_g_latest.pth"
    write_reference_checkpoint(path, in_channels, seed=11)
    params = torch.load(path, weights_only=True)["params"]
    assert len(params) == (341 if in_channels == 3 else 342)

    reference = RefCLIPDenoising(in_channels, in_channels)
    missing, unexpected = reference.load_state_dict(params, strict=True)
    assert not missing and not unexpected
    reference.eval()

    loaded = load_reference_checkpoint(path)
    assert len(loaded.ignored_keys) == 60 and all(k.startswith("encoder.layer4.") for k in loaded.ignored_keys)
    used = set(loaded.network.state_dict())
    assert used | set(loaded.ignored_keys) == set(params), "every tensor of the file is used or is layer4"

    model = load_model(path)
    assert model.in_channels == in_channels
    x = torch.rand(2, in_channels, 64, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = reference(x)
        actual = model.network(x)
        tiled_geometry = model.network(x, geometry=TileGeometry(((0, 0), (0, 0)), (64, 96)))
    assert actual.shape == x.shape
    assert (actual - expected).abs().max().item() < 1e-5
    assert (tiled_geometry - expected).abs().max().item() < 1e-5


def test_reference_state_dict_has_the_documented_layout():
    state = reference_state_dict(random_network(3))
    assert sum(k.startswith("encoder.") for k in state) == 330
    assert sum(k.startswith("encoder.layer4.") for k in state) == 60
    decoder = sorted(k for k in state if not k.startswith("encoder."))
    assert decoder == sorted(
        [f"up_path.{i}.conv_block.block.{j}.weight" for i in range(5) for j in (0, 2)] + ["last.weight"]
    )
    assert state["encoder.layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["encoder.bn1.num_batches_tracked"].dtype == torch.int64
