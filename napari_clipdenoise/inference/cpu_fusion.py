"""Convolutions fused with the activation (and residual add) after them, for CPU inference.

On the CPU a separate ReLU, LeakyReLU or residual add is one more pass over a
feature map in memory; for the bf16 network at 1024 x 1024 those passes took 35%
of the forward time (torch profiler on the benchmark Xeon: convolutions 446 ms,
clamp_min + leaky_relu_ + add 233 ms). oneDNN can apply them inside the
convolution while the output is still in cache. torch exposes that as
``torch.ops.mkldnn._convolution_pointwise`` (the op torch.compile's CPU backend
emits); it is private, so :func:`fusion_supported` checks it against plain
``F.conv2d`` once per dtype and the prepared network falls back to the unfused
modules when it is missing or disagrees.

Only the inference copy made by ``prepare_network`` is rewritten, after its
BatchNorms were folded into the convolutions; the user's network is untouched.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn
from torch.nn import functional as F

from ..model.network import Bottleneck, CLIPEncoder, ConvBlock


def _pointwise_op():
    return torch.ops.mkldnn._convolution_pointwise


class FusedConv2d(nn.Module):
    """``activation(conv(x) [+ residual])`` in one oneDNN call. ``activation``: None, "relu" or "leaky_relu"."""

    def __init__(self, conv: nn.Conv2d, activation: str | None = None, negative_slope: float = 0.01):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only plain zero-padded, ungrouped convolutions can be fused")
        self.weight, self.bias = conv.weight, conv.bias
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.activation = activation or "none"
        self.scalars = [negative_slope] if activation == "leaky_relu" else []

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        op = _pointwise_op()
        geometry = (self.padding, self.stride, self.dilation, 1)
        if residual is None:
            return op(x, self.weight, self.bias, *geometry, self.activation, self.scalars, None)
        return op.binary(
            x, residual, self.weight, self.bias, *geometry, "add", None, self.activation, self.scalars, None
        )

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, padding={self.padding}, stride={self.stride}, activation={self.activation}"


class FusedBottleneck(nn.Module):
    """:class:`Bottleneck` with conv+ReLU fused and the residual added inside the last convolution."""

    def __init__(self, block: Bottleneck):
        super().__init__()
        _require_folded(block)
        self.conv1 = FusedConv2d(block.conv1, "relu")
        self.conv2 = FusedConv2d(block.conv2, "relu")
        self.avgpool = block.avgpool
        self.conv3 = FusedConv2d(block.conv3, "relu")  # relu(conv3(...) + identity)
        self.downsample = None
        if block.downsample is not None:
            pool, conv = block.downsample[0], block.downsample[1]
            self.downsample = nn.Sequential(pool, FusedConv2d(conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.avgpool(self.conv2(self.conv1(x))), identity)


class FusedEncoder(nn.Module):
    """:class:`CLIPEncoder` built from fused convolutions; returns the same four feature maps."""

    def __init__(self, encoder: CLIPEncoder):
        super().__init__()
        _require_folded(encoder)
        self.conv1 = FusedConv2d(encoder.conv1, "relu")
        self.conv2 = FusedConv2d(encoder.conv2, "relu")
        self.conv3 = FusedConv2d(encoder.conv3, "relu")
        self.avgpool = encoder.avgpool
        self.layer1, self.layer2, self.layer3 = (
            nn.Sequential(*(FusedBottleneck(block) for block in getattr(encoder, f"layer{i}"))) for i in (1, 2, 3)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.conv3(self.conv2(self.conv1(x)))
        f2 = self.layer1(self.avgpool(f1))
        f3 = self.layer2(f2)
        return [f1, f2, f3, self.layer3(f3)]


def _require_folded(module: nn.Module) -> None:
    if any(isinstance(child, nn.BatchNorm2d) for child in module.modules()):
        raise ValueError("fold the BatchNorm layers into the convolutions (fold_batch_norms) before fusing")


def _fused_conv_block(block: ConvBlock) -> nn.Sequential:
    first, first_act, second, second_act = block.block
    return nn.Sequential(
        FusedConv2d(first, "leaky_relu", first_act.negative_slope),
        FusedConv2d(second, "leaky_relu", second_act.negative_slope),
    )


def fuse_convolutions(network: nn.Module) -> int:
    """Rewrite the CLIPDenoiser parts of a BN-folded network in place to use fused convolutions; returns how many."""
    for module in list(network.modules()):  # also inside wrappers (e.g. the dask workers' grid shift)
        for name, child in module.named_children():
            if isinstance(child, CLIPEncoder):
                setattr(module, name, FusedEncoder(child))
        if isinstance(module, ConvBlock):
            module.block = _fused_conv_block(module)
    return sum(isinstance(module, FusedConv2d) for module in network.modules())


def fusion_allowed() -> bool:
    """False when the environment sets ``CLIPDENOISE_CPU_FUSION`` to 0/off/false/no."""
    return os.environ.get("CLIPDENOISE_CPU_FUSION", "1").strip().lower() not in ("0", "off", "false", "no")


@functools.cache
def fusion_supported(dtype: torch.dtype) -> bool:
    """Whether this torch build has the fused oneDNN convolution and it agrees with ``F.conv2d`` at ``dtype``."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return False
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.1)
        conv.bias.copy_(torch.randn(16, generator=generator) * 0.1)
    conv = conv.to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(1, 16, 12, 12, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    residual = torch.randn(1, 16, 12, 12, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    try:
        with torch.inference_mode():
            checks = (
                (FusedConv2d(conv, "leaky_relu", 0.2)(x), F.leaky_relu(conv(x).float(), 0.2)),
                (FusedConv2d(conv, "relu")(x, residual), F.relu(conv(x).float() + residual.float())),
            )
            return all(
                got.shape == want.shape and (got.float() - want).abs().max().item() < tolerance for got, want in checks
            )
    except (RuntimeError, NotImplementedError, AttributeError):
        return False
