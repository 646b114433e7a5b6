"""Preparing a network for inference: BatchNorm folded, compute dtype, memory format, CPU fusion, cached.

Device and precision are chosen in :mod:`.device`; this module only turns a
network plus those choices into a fast, read-only copy.
"""

from __future__ import annotations

import os
import weakref

import torch

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def fold_batch_norms(network: torch.nn.Module) -> int:
    """Fold eval-mode BatchNorm2d layers into the convolution before them, in place.

    Pairs are found by structure: ``convN``/``bnN`` attributes of one module, or a
    Conv2d directly followed by a BatchNorm2d inside an ``nn.Sequential``. Each BN
    becomes ``nn.Identity`` and its scale and shift go into the convolution's
    weight and bias. Returns the number of layers folded. Besides saving a pass
    over every feature map, this keeps low-precision inference closer to fp32
    (the BN's rounding step disappears).
    """
    from torch import nn

    folded = 0
    for module in list(network.modules()):
        children = dict(module.named_children())
        if isinstance(module, nn.Sequential):
            items = list(children.items())
            pairs = [
                (a, b)
                for (a, ma), (b, mb) in zip(items, items[1:], strict=False)
                if isinstance(ma, nn.Conv2d) and isinstance(mb, nn.BatchNorm2d)
            ]
        else:
            pairs = [
                ("conv" + name[2:], name)
                for name, child in children.items()
                if name.startswith("bn")
                and isinstance(child, nn.BatchNorm2d)
                and isinstance(children.get("conv" + name[2:]), nn.Conv2d)
            ]
        for conv_name, bn_name in pairs:
            conv, bn = children[conv_name], children[bn_name]
            if bn.training or not bn.track_running_stats or bn.running_var is None:
                continue
            with torch.no_grad():
                scale = torch.rsqrt(bn.running_var.double() + bn.eps)
                if bn.affine:
                    scale = scale * bn.weight.double()
                shift = -bn.running_mean.double() * scale
                if bn.affine:
                    shift = shift + bn.bias.double()
                if conv.bias is not None:
                    shift = shift + conv.bias.double() * scale
                weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.ndim - 1)))
                conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
                conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


class InferenceNetwork(torch.nn.Module):
    """A network prepared for inference: BN folded, weights in the compute dtype.

    ``forward`` casts its input to the compute dtype and returns what the network
    returns (the tiler converts it to float32). The tiler sees
    ``handles_precision`` and does not add autocast on top.
    """

    handles_precision = True

    def __init__(self, network: torch.nn.Module, precision: str):
        super().__init__()
        self.network = network
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.accepts_tile_geometry = bool(getattr(network, "accepts_tile_geometry", False))

    def forward(self, x: torch.Tensor, geometry=None) -> torch.Tensor:
        x = x.to(self.dtype)
        return self.network(x) if geometry is None else self.network(x, geometry=geometry)


def prepare_network(
    network: torch.nn.Module, device: torch.device, precision: str, channels_last: bool, fuse: bool | None = None
) -> InferenceNetwork:
    """Copy ``network`` for fast inference on ``device`` at ``precision`` (the original is left untouched).

    Measured on the 2-core Xeon (AMX-BF16) used for BENCHMARKS.md, 512 x 512 RGB,
    random weights: BN folding + bf16 weights + channels_last is faster than bf16
    autocast on the unfolded network and brings its output closer to fp32
    (PSNR against fp32 41.2 -> 44.5 dB on a noisy astronaut crop).

    ``fuse`` replaces conv + activation (+ residual add) by single oneDNN calls.
    Default: on the CPU when :func:`~.cpu_fusion.fusion_supported`, unless the
    environment sets ``CLIPDENOISE_CPU_FUSION=0`` (an escape hatch, and the
    benchmark's before/after switch).
    """
    import copy

    from .cpu_fusion import fuse_convolutions, fusion_allowed, fusion_supported

    dtype = _DTYPES[precision]
    if fuse is None:
        fuse = device.type == "cpu" and fusion_allowed() and fusion_supported(dtype)
    prepared = copy.deepcopy(network).eval()
    fold_batch_norms(prepared)
    prepared = prepared.to(device=device, dtype=dtype)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    prepared.requires_grad_(False)
    if fuse:
        fuse_convolutions(prepared)
    return InferenceNetwork(prepared, precision).eval()


_MAX_PREPARED_PER_NETWORK = 3  # e.g. bf16 and fp32 on the CPU and one GPU copy
_PREPARED: weakref.WeakKeyDictionary = None  # network -> {(device, precision, channels_last): (signature, prepared)}


def prepared_network(
    network: torch.nn.Module, device: torch.device, precision: str, channels_last: bool
) -> InferenceNetwork:
    """``prepare_network`` with a per-network cache, so repeated ``denoise`` calls do not copy the weights again.

    The cache entry is rebuilt when any parameter or buffer of ``network`` has
    been replaced or modified in place since it was made.
    """
    global _PREPARED
    if _PREPARED is None:
        _PREPARED = weakref.WeakKeyDictionary()
    signature = tuple((id(t), t._version) for t in network.state_dict(keep_vars=True).values())
    entries = _PREPARED.setdefault(network, {})
    key = (str(device), precision, bool(channels_last), os.environ.get("CLIPDENOISE_CPU_FUSION"))
    cached = entries.get(key)
    if cached is not None and cached[0] == signature:
        return cached[1]
    prepared = prepare_network(network, device, precision, channels_last)
    for stale in [k for k, (sig, _) in entries.items() if sig != signature]:
        del entries[stale]
    while len(entries) >= _MAX_PREPARED_PER_NETWORK:  # oldest first
        del entries[next(iter(entries))]
    entries[key] = (signature, prepared)
    return prepared
