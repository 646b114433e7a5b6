"""The CLIPDenoiser network: a frozen CLIP RN50 encoder and a learned decoder.

The layout follows METHOD.md section 1. Encoder parameter names are those of
OpenAI CLIP / open_clip's ``visual.*`` ModifiedResNet, so CLIP weight files and
the authors' released checkpoints map onto this module key for key.

Only stem..layer3 exist here: layer4's output is never used by the method, so it
is not built and never run (checkpoint loaders accept and drop its keys).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: Input height and width must be multiples of this (four 2x downsamplings).
SIZE_MULTIPLE = 16

ENCODER_LAYERS = (3, 4, 6)  # blocks in layer1..layer3 (layer4 is never built)
ENCODER_WIDTH = 64


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a :class:`CLIPDenoiser` with the same shapes."""

    in_channels: int = 3
    out_channels: int = 3
    bias: bool = False
    negative_slope: float = 0.2
    feature_aug_level: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class Bottleneck(nn.Module):
    """CLIP's anti-aliased ResNet bottleneck (AvgPool before strided convs)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential()
            self.downsample.add_module("-1", nn.AvgPool2d(stride))
            self.downsample.add_module("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False))
            self.downsample.add_module("1", nn.BatchNorm2d(planes * self.expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return F.relu(out + identity)


class CLIPEncoder(nn.Module):
    """CLIP RN50 image tower up to layer3, returning the dense features f1..f4."""

    def __init__(self, width: int = ENCODER_WIDTH, layers: tuple[int, ...] = ENCODER_LAYERS):
        super().__init__()
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for index, (blocks, stride) in enumerate(zip(layers, (1, 2, 2), strict=True), start=1):
            planes = width * 2 ** (index - 1)
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        f1 = F.relu(self.bn3(self.conv3(x)))  # H/2, before the stem's AvgPool
        f2 = self.layer1(self.avgpool(f1))  # H/4
        f3 = self.layer2(f2)  # H/8
        f4 = self.layer3(f3)  # H/16
        return [f1, f2, f3, f4]


class ConvBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU (reference key layout ``block.{0,2}``)."""

    def __init__(self, in_ch: int, out_ch: int, slope: float, bias: bool):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
            nn.LeakyReLU(slope, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _upsample_axis(
    x: torch.Tensor, dim: int, n_out_global: int, offset_out: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Bilinear x2 along ``dim`` (2 or 3) with align_corners=True on the whole image's grid.

    Output ``p`` of this tile is global output ``P = offset_out + p`` and samples the
    global input at ``X = P * s`` with ``s = (N - 1) / (2N - 1) < 1/2`` (``N`` input
    pixels). For ``P = 2J`` the sample lies in ``[J - 1/2, J]`` and for ``P = 2J + 1``
    in ``[J, J + 1/2]`` (``P * (1/2 - s) <= 1/2``), so even outputs interpolate
    between input ``j`` and ``j - 1`` and odd ones between ``j`` and ``j + 1`` (``j``
    local): two lerps of shifted views, written straight into the even and odd
    slots of ``out``, with no index gathers. Positions outside the tile clamp to its
    edge, as a tile-local ``F.interpolate`` would.
    """
    n = x.shape[dim]
    scale = (n_out_global // 2 - 1) / (n_out_global - 1) if n_out_global > 1 else 0.0
    j = torch.arange(n, dtype=torch.float64, device=x.device)
    global_even = offset_out + 2 * j
    shape = [1, 1, 1, 1]
    shape[dim] = -1
    to_previous = (offset_out // 2 + j - global_even * scale).to(x.dtype).view(shape)
    to_next = ((global_even + 1) * scale - offset_out // 2 - j).to(x.dtype).view(shape)
    if torch.is_grad_enabled() and x.requires_grad:  # differentiable, with the copies that costs
        previous = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
        following = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        pairs = torch.stack([torch.lerp(x, previous, to_previous), torch.lerp(x, following, to_next)], dim + 1)
        return pairs.flatten(dim, dim + 1)
    if out is None:
        size = list(x.shape)
        size[dim] = 2 * n
        out = torch.empty(size, dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    even = [slice(None)] * 4
    odd = [slice(None)] * 4
    even[dim], odd[dim] = slice(0, None, 2), slice(1, None, 2)
    even, odd = out[tuple(even)], out[tuple(odd)]
    inner = n - 1  # the first even and the last odd output clamp to the tile's edge pixel
    torch.lerp(
        x.narrow(dim, 1, inner),
        x.narrow(dim, 0, inner),
        to_previous.narrow(dim, 1, inner),
        out=even.narrow(dim, 1, inner),
    )
    torch.lerp(
        x.narrow(dim, 0, inner), x.narrow(dim, 1, inner), to_next.narrow(dim, 0, inner), out=odd.narrow(dim, 0, inner)
    )
    even.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
    odd.narrow(dim, inner, 1).copy_(x.narrow(dim, inner, 1))
    return out


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def _upsample_concat(x: torch.Tensor, skip: torch.Tensor, geometry, factor: int) -> torch.Tensor:
    """``cat([upsample(x), skip])`` for tiles on the whole image's grid; ``factor`` is the output's.

    The upsampled tile is written straight into its channels of the concatenated
    map, so neither the upsampled map nor the concatenation costs a separate copy.
    """
    n, channels, height, width = x.shape
    full_height, full_width = (size // factor for size in geometry.full_size)
    if torch.is_grad_enabled() and (x.requires_grad or skip.requires_grad):
        items = [
            _upsample_axis(_upsample_axis(item, 2, full_height, top // factor), 3, full_width, left // factor)
            for item, (top, left) in zip(x.split(1), geometry.origins, strict=True)
        ]
        return torch.cat([torch.cat(items), skip], dim=1)
    joined = torch.empty(
        (n, channels + skip.shape[1], 2 * height, 2 * width),
        dtype=x.dtype,
        device=x.device,
        memory_format=_memory_format(x),
    )
    for index, (top, left) in enumerate(geometry.origins):
        rows = _upsample_axis(x[index : index + 1], 2, full_height, top // factor)
        _upsample_axis(rows, 3, full_width, left // factor, out=joined[index : index + 1, :channels])
    joined[:, channels:] = skip
    return joined


class DecoderBlock(nn.Module):
    """Optional bilinear x2 upsampling and skip concatenation, then a ConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, slope: float, bias: bool, upsample: bool, factor: int = 1):
        super().__init__()
        self.upsample = upsample
        self.factor = factor  # output resolution is full / factor
        self.conv_block = ConvBlock(in_ch, out_ch, slope, bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, geometry=None) -> torch.Tensor:
        if self.upsample and geometry is None:  # the reference path
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = torch.cat([x, skip], dim=1)
        elif self.upsample:
            x = _upsample_concat(x, skip, geometry, self.factor)
        return self.conv_block(x)


class CLIPDenoiser(nn.Module):
    """Frozen CLIP RN50 encoder + learned decoder (Cheng et al., CVPR 2024).

    ``forward`` maps ``N x C x H x W`` float images in [0, 1] (H and W multiples of
    16) to denoised images of the same shape; there is no clamp and no residual.
    """

    def __init__(self, config: NetworkConfig | None = None, **overrides):
        super().__init__()
        config = config or NetworkConfig()
        if overrides:
            config = NetworkConfig(**{**config.to_dict(), **overrides})
        if config.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {config.in_channels}")
        self.config = config
        self.feature_aug_level = config.feature_aug_level
        #: "reference" keeps encoder BN in train mode while training (as the authors
        #: did); "frozen" keeps it in eval mode. Only matters in training.
        self.encoder_bn_mode = "reference"
        slope, bias = config.negative_slope, config.bias
        if config.in_channels == 1:
            self.first = nn.Conv2d(1, 3, 1, bias=bias)
        self.encoder = CLIPEncoder()
        self.encoder.requires_grad_(False)
        # (in, out, upsample, output factor): see METHOD.md's decoder table
        blocks = [
            (1024, 512, False, 16),
            (1024, 256, True, 8),
            (512, 128, True, 4),
            (192, 64, True, 2),
            (67, 64, True, 1),
        ]
        self.up_path = nn.ModuleList(
            DecoderBlock(cin, cout, slope, bias, upsample=up, factor=f) for cin, cout, up, f in blocks
        )
        self.last = nn.Conv2d(64, config.out_channels, 3, padding=1, bias=bias)

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def train(self, mode: bool = True) -> CLIPDenoiser:
        super().train(mode)
        if mode and self.encoder_bn_mode == "frozen":
            self.encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    #: The tiler may pass ``geometry``, a ``napari_clipdenoise.inference.tile_grid.TileGeometry``
    #: (tile ``origins`` and the whole image's padded ``full_size``), so tiles match a whole-image pass.
    accepts_tile_geometry = True

    def forward(self, x: torch.Tensor, geometry=None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected an N x {self.in_channels} x H x W tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(
                f"image height and width must be multiples of {SIZE_MULTIPLE}, got {height} x {width};"
                " pad the image (napari_clipdenoise.denoise does this for you)"
            )
        if self.in_channels == 1:
            x = self.first(x)
        features = [x, *self.encoder(x)]
        if self.training and self.feature_aug_level > 0:
            features = [features[0]] + [
                f * (1.0 + self.feature_aug_level * k * torch.randn_like(f))
                for k, f in enumerate(features[1:], start=1)
            ]
        y = self.up_path[0](features[4])
        for block, skip in zip(self.up_path[1:], reversed(features[:4]), strict=True):
            y = block(y, skip, geometry)
        return self.last(y)


def count_trainable_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def init_random_weights(network: CLIPDenoiser, seed: int = 0, *, encoder: bool = True) -> CLIPDenoiser:
    """Fill the network with seeded random weights that keep activations at unit scale.

    Used for tests, benchmarks and ``--random-encoder`` ablations: Kaiming-normal
    convolutions (LeakyReLU gain), unit BN affine, zero BN statistics shift.
    """
    generator = torch.Generator().manual_seed(seed)
    modules = network.modules() if encoder else [m for n, m in network.named_modules() if not n.startswith("encoder")]
    with torch.no_grad():
        for module in modules:
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                std = (2.0 / (1 + 0.2**2) / fan_in) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(1.0 + 0.1 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(1.0 + 0.1 * torch.rand(module.running_var.shape, generator=generator))
        # A small output layer keeps the random output in a [0, 1]-like range, so that
        # tolerances on the [0, 1] scale mean something in tests of tiling and dtypes.
        network.last.weight.mul_(0.05)
    return network
