"""IDF: iterative dynamic filtering for generalizable denoising (a peer method).

Our own implementation of the network of Kim, Ko, Ali and Kim, "Iterative Dynamic Filtering
Networks for Generalizable Image Denoising" (ICCV 2025, arXiv 2508.19649; the authors' code and
weights: github.com/dongjinkim9/IDF, Apache License 2.0). One small block (49,021 parameters)
with shared weights is applied ``iterations`` (10) times; each pass predicts a normalised 3 x 3
filter per pixel and applies it to the current estimate.

What this module offers
-----------------------
:class:`IDFDenoiser`
    ``forward(x)``: N x 3 x H x W on [0, 1] -> the denoised batch, clamped to [0, 1].
:func:`load_idf_weights`
    A strict reader of the 6-tensor ``.safetensors`` weight files.
:func:`read_idf_lightning_checkpoint`
    Extracts the block tensors from the authors' Lightning ``.ckpt`` pickles without running any
    pickled code (every global that is not a tensor-rebuild function becomes an inert placeholder).
:func:`denoise_plane`
    Whole image, or an *exact* tiled run for large planes: ``rms_norm`` and the residual
    statistics are whole-image quantities, so each iteration makes two passes over the tiles (one to
    sum the squares that the kernel predictor's normalisation needs, one to apply); only the
    iteration state (x and the residual, 3 x H x W each, float32) is kept for the whole plane.

Two rewrites that are exact up to float rounding (all convolutions have no bias, so they are linear):
``conv(rms_norm(t)) == conv(t) / (1e-4 + rms(t))``, which lets the kernel predictor run on the
features and the correlation maps separately (no 73-channel concatenation), and the per-pixel
normalisation of the neighbour vectors is done once per pixel before the 3 x 3 gathering (the same
numbers: a neighbour's normalised vector does not depend on which centre it is gathered for).
Sums of squares are reduced row-wise and accumulated in float64 (``torch.linalg.vector_norm`` alone
drifts by ~5e-4 relative on a whole image), so whole-image and tiled runs agree to float rounding.

Measured on 2 AMD EPYC cores, 1 thread (benchmarks/idf_tiling.py): the exact tiled runner with
256 px tiles and ``cache_logits=True`` is as fast as or faster than the whole-image forward (smaller
working set) and needs ~60 B/pixel plus one tile, against ~650 B/pixel for the whole image.
bf16 autocast is ~1.7x faster on an avx512_bf16 CPU but only agrees with fp32 to ~70 dB PSNR
(max 6 grey levels on a 512 x 512 photo), so it is opt-in.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError, DenoiseCancelled
from .idf_grid import (  # noqa: F401 (count_tile_steps: the progress total of denoise_plane, documented here)
    DEFAULT_ITERATIONS,
    _check_tile_size,
    _single_tile,
    _tile_bounds,
    count_tile_steps,
)

#: The ImageNet-like statistics of the authors' training data (per RGB channel).
RAW_MEAN = (0.36187348, 0.4361255, 0.4335091)
RAW_STD = (0.19088039, 0.19967876, 0.21309015)

EPS = 1e-4
#: Rows/columns of x that one output pixel depends on in one iteration (2 convs + kernel conv).
HALO = 3
#: The smallest height/width the reflect padding of the even iterations allows.
MIN_SIZE = 3
N_PARAMETERS = 49_021
#: The authors' default weights (Gaussian sigma 15/255), shipped with the package; see bundled/README.md.
BUNDLED_WEIGHTS = Path(__file__).with_name("bundled") / "idf_g_15.safetensors"

#: Key -> shape of the six tensors of a weight file.
STATE_SHAPES: dict[str, tuple[int, ...]] = {
    "block.feature_extractor.0.weight": (64, 3, 3, 3),
    "block.feature_extractor.2.weight": (64, 64, 3, 3),
    "block.kernel_predictor.weight": (9, 73, 3, 3),
    "block.gca.conv.weight": (6, 6, 1, 1),
    "block.gca.attention.0.weight": (64, 6, 1, 1),
    "block.gca.attention.2.weight": (64, 64, 1, 1),
}

PRECISIONS = ("fp32", "bf16")


# --------------------------------------------------------------------------- network
class GlobalContextAttention(nn.Module):
    """Residual statistics (per-channel mean and std) -> 64 sigmoid gates for the features."""

    def __init__(self, features: int = 64):
        super().__init__()
        self.conv = nn.Conv2d(6, 6, 1, bias=False)
        self.attention = nn.Sequential(
            nn.Conv2d(6, features, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 1, bias=False),
            nn.Sigmoid(),
        )


class IDFBlock(nn.Module):
    """The shared block; holds the parameters (the computation is in the functions below)."""

    def __init__(self, features: int = 64):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(3, features, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        )
        self.kernel_predictor = nn.Conv2d(features + 9, 9, 3, padding=1, bias=False)
        self.gca = GlobalContextAttention(features)


class IDFDenoiser(nn.Module):
    """IDF with one shared block applied ``iterations`` times (no early stop)."""

    family = "idf"
    in_channels = 3
    out_channels = 3
    size_multiple = 1
    accepts_tile_geometry = False

    def __init__(self, iterations: int = DEFAULT_ITERATIONS):
        super().__init__()
        self.block = IDFBlock()
        self.iterations = int(iterations)
        #: Convolutions in channels-last layout (faster on CPU; the same numbers to float rounding).
        self.channels_last = True
        #: "fp32" or "bf16" (bf16 autocast for the convolutions only; statistics stay float32).
        self.precision = "fp32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"IDF expects an N x 3 x H x W batch, got shape {tuple(x.shape)}")
        check_size(x.shape[-2], x.shape[-1])
        weights = _weights(self, x.device)
        outputs = []
        for image in x.float().split(1):
            state = normalise_input(image)
            residual = None
            for i in range(self.iterations):
                state, residual = iterate_whole(
                    weights, state, residual, i, precision=self.precision, channels_last=self.channels_last
                )
            outputs.append(denormalise_output(state))
        return torch.cat(outputs).to(x.dtype)


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def check_size(height: int, width: int) -> None:
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(
            f"IDF needs an image of at least {MIN_SIZE} x {MIN_SIZE} pixels (its reflect padding is 2), "
            f"got {height} x {width}"
        )


def _scale_bias(device=None) -> tuple[torch.Tensor, torch.Tensor]:
    std = torch.tensor(RAW_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    mean = torch.tensor(RAW_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    scale = 0.5 / std
    return scale, -mean * scale


def normalise_input(x: torch.Tensor) -> torch.Tensor:
    scale, bias = _scale_bias(x.device)
    return x * scale + bias


def denormalise_output(y: torch.Tensor) -> torch.Tensor:
    scale, bias = _scale_bias(y.device)
    return ((y - bias) / scale).clamp_(0.0, 1.0)


def _weights(network: IDFDenoiser, device) -> dict[str, torch.Tensor]:
    state = network.state_dict()
    return {key: state[key].detach().to(device=device, dtype=torch.float32) for key in STATE_SHAPES}


def _geometry(i: int) -> tuple[int, str]:
    """Dilation and padding mode of iteration ``i``: 2/reflect when even, 1/zero when odd."""
    return (2, "reflect") if i % 2 == 0 else (1, "zero")


def _sum_squares(t: torch.Tensor) -> torch.Tensor:
    """Sum of squares, accurate for huge tensors (a float64 scalar).

    ``torch.linalg.vector_norm`` accumulates float32 naively (a relative error of ~5e-4 over 16M
    elements), which would make whole-image and tiled runs disagree; here it only reduces rows along
    the tensor's innermost contiguous run (a few thousand elements), and the rows are summed in float64.
    """
    t = t.float()
    if t.dim() == 4 and t.stride(1) == 1 and t.shape[1] > 1:  # channels-last (or a slice of it)
        rows = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1] * t.shape[3])
    else:
        rows = t.reshape(-1, t.shape[-1])
    return torch.linalg.vector_norm(rows, dim=1).double().square().sum()


def _rms(t: torch.Tensor) -> torch.Tensor:
    """RMS over all elements (the state tensors hold one image), float32."""
    return torch.sqrt(_sum_squares(t) / t.numel()).float()


def _gates(weights: dict[str, torch.Tensor], residual: torch.Tensor | None) -> torch.Tensor | None:
    """The 64 feature gates from the previous residual's per-channel mean and unbiased std."""
    if residual is None:
        return None
    std, mean = torch.std_mean(residual.float(), dim=(2, 3))  # 1 x 3 each
    stats = torch.cat([mean, std], dim=1)[:, :, None, None]  # means first, then stds
    g = F.conv2d(stats, weights["block.gca.conv.weight"])
    g = g / (EPS + _rms(g))
    g = F.relu(F.conv2d(g, weights["block.gca.attention.0.weight"]))
    g = torch.sigmoid(F.conv2d(g, weights["block.gca.attention.2.weight"]))
    return g.view(-1)


class _Kernels:
    """Per-iteration weights: the gates folded into the second conv (sigmoid > 0 commutes with ReLU)."""

    def __init__(self, weights, residual, *, channels_last: bool):
        w2 = weights["block.feature_extractor.2.weight"]
        gates = _gates(weights, residual)
        if gates is not None:
            w2 = w2 * gates.view(-1, 1, 1, 1)
        wk = weights["block.kernel_predictor.weight"]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.w1 = weights["block.feature_extractor.0.weight"].contiguous(memory_format=fmt)
        self.w2 = w2.contiguous(memory_format=fmt)
        self.wk_features = wk[:, :64].contiguous(memory_format=fmt)
        self.wk_correlation = wk[:, 64:].contiguous()
        self.memory_format = fmt


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _pixel_normalise(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's 3 channel values centred by their mean, divided by (unbiased std + 1e-4).

    Written out per channel plane: ``torch.std_mean`` over a 3-long channel axis is ~40x slower.
    """
    mean = (x[:, 0:1] + x[:, 1:2] + x[:, 2:3]).div_(3)
    centred = x - mean
    c0, c1, c2 = centred[:, 0:1], centred[:, 1:2], centred[:, 2:3]
    std = (c0 * c0).addcmul_(c1, c1).addcmul_(c2, c2).div_(2).sqrt_()
    return centred.div_(std.add_(EPS))


def _shifts(t: torch.Tensor, d: int, h: int, w: int):
    """The 9 views of a (h + 2d) x (w + 2d) array at offsets (dy, dx) * d, raster order."""
    for dy in range(3):
        for dx in range(3):
            yield t[..., dy * d : dy * d + h, dx * d : dx * d + w]


def _correlation(normalised: torch.Tensor, d: int, h: int, w: int) -> torch.Tensor:
    """9 maps: plain dot product over channels of each neighbour's normalised vector with the centre's."""
    centre = normalised[..., d : d + h, d : d + w]
    c0, c1, c2 = centre[:, 0], centre[:, 1], centre[:, 2]
    out = torch.empty((normalised.shape[0], 9, h, w), dtype=normalised.dtype, device=normalised.device)
    for j, view in enumerate(_shifts(normalised, d, h, w)):
        plane = out[:, j]
        torch.mul(view[:, 0], c0, out=plane)
        plane.addcmul_(view[:, 1], c1).addcmul_(view[:, 2], c2)
    return out


def _apply_kernels(logits: torch.Tensor, padded: torch.Tensor, d: int) -> torch.Tensor:
    """|v|^3 / (sum |v|^3 + 1e-4) per pixel, then the weighted sum of the 9 gathered neighbours."""
    h, w = logits.shape[-2:]
    k = logits.float().contiguous().abs().pow_(3)
    k = k.div_(k.sum(1, keepdim=True).add_(EPS))
    out = torch.zeros((padded.shape[0], 3, h, w), dtype=torch.float32, device=padded.device)
    for j, view in enumerate(_shifts(padded, d, h, w)):
        out.addcmul_(k[:, j : j + 1], view)
    return out


def _pad(x: torch.Tensor, d: int, mode: str) -> torch.Tensor:
    return F.pad(x, (d, d, d, d), mode="reflect") if mode == "reflect" else F.pad(x, (d, d, d, d))


def iterate_whole(
    weights: dict[str, torch.Tensor],
    x: torch.Tensor,
    residual: torch.Tensor | None,
    i: int,
    *,
    precision: str = "fp32",
    channels_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration on a whole (normalised) image 1 x 3 x H x W: returns (output, x - output)."""
    h, w = x.shape[-2:]
    d, mode = _geometry(i)
    kernels = _Kernels(weights, residual, channels_last=channels_last)
    with _autocast(precision, x.device):
        xr = (x / (EPS + _rms(x))).contiguous(memory_format=kernels.memory_format)
        f = F.relu_(F.conv2d(xr, kernels.w1, padding=1))
        f = F.relu_(F.conv2d(f, kernels.w2, padding=1))
        padded = _pad(x, d, mode)
        corr = _correlation(_pixel_normalise(padded), d, h, w)
        logits = F.conv2d(f, kernels.wk_features, padding=1).float()
        logits += F.conv2d(corr, kernels.wk_correlation, padding=1).float()
        total = _sum_squares(f) + _sum_squares(corr)
    del f
    logits /= (EPS + torch.sqrt(total / (73 * h * w))).float()
    out = _apply_kernels(logits, padded, d)
    return out, x - out


# --------------------------------------------------------------------------- exact tiled runner
def _window(x: torch.Tensor, r0: int, r1: int, c0: int, c1: int, mode: str) -> torch.Tensor:
    """x[..., r0:r1, c0:c1] in image coordinates; outside the image: reflected or zero."""
    h, w = x.shape[-2:]
    if r0 >= 0 and c0 >= 0 and r1 <= h and c1 <= w:
        return x[..., r0:r1, c0:c1]

    def index(start, stop, n):
        idx = torch.arange(start, stop)
        valid = (idx >= 0) & (idx < n)
        if mode == "reflect":
            idx = torch.where(idx < 0, -idx, idx)
            idx = torch.where(idx >= n, 2 * (n - 1) - idx, idx)
        # Far outside (only ever feeding values that are discarded) clamp to stay in range.
        return idx.clamp_(0, n - 1), valid

    rows, rvalid = index(r0, r1, h)
    cols, cvalid = index(c0, c1, w)
    out = x.index_select(-2, rows).index_select(-1, cols)
    if mode == "zero":
        out[..., ~rvalid, :] = 0
        out[..., :, ~cvalid] = 0
    return out


def _zero_outside(t: torch.Tensor, r0: int, c0: int, h: int, w: int) -> torch.Tensor:
    """Zero (in place) the rows/columns of ``t`` (top-left at image (r0, c0)) outside h x w."""
    th, tw = t.shape[-2:]
    if r0 < 0:
        t[..., :-r0, :] = 0
    if r0 + th > h:
        t[..., h - r0 :, :] = 0
    if c0 < 0:
        t[..., :, :-c0] = 0
    if c0 + tw > w:
        t[..., :, w - c0 :] = 0
    return t


def _tile_logits(kernels: _Kernels, x: torch.Tensor, x_scale, i: int, r0, r1, c0, c1, precision, device):
    """Un-normalised kernel logits on the tile and the sum of squares of its 73 channels there."""
    h, w = x.shape[-2:]
    d, mode = _geometry(i)
    th, tw = r1 - r0, c1 - c0
    with _autocast(precision, device):
        xz = _window(x, r0 - HALO, r1 + HALO, c0 - HALO, c1 + HALO, "zero").to(device)
        xr = (xz / x_scale).contiguous(memory_format=kernels.memory_format)
        f = _zero_outside(F.relu_(F.conv2d(xr, kernels.w1)), r0 - 2, c0 - 2, h, w)
        f = _zero_outside(F.relu_(F.conv2d(f, kernels.w2)), r0 - 1, c0 - 1, h, w)
        near = _window(x, r0 - 1 - d, r1 + 1 + d, c0 - 1 - d, c1 + 1 + d, mode).to(device)
        corr = _zero_outside(_correlation(_pixel_normalise(near), d, th + 2, tw + 2), r0 - 1, c0 - 1, h, w)
        logits = F.conv2d(f, kernels.wk_features).float()
        logits += F.conv2d(corr, kernels.wk_correlation).float()
        total = _sum_squares(f[..., 1:-1, 1:-1]) + _sum_squares(corr[..., 1:-1, 1:-1])
    return logits, total


def denoise_plane(
    network: IDFDenoiser,
    plane: np.ndarray,
    *,
    tile_size: int | None = None,
    device="cpu",
    precision: str = "fp32",
    on_tiles: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    cache_logits: bool = False,
) -> np.ndarray:
    """Denoise one RGB plane (3 x H x W float on [0, 1]) -> 3 x H x W float32 on [0, 1].

    ``tile_size=None`` (or a tile at least the image) runs whole images, one iteration at a time.
    Otherwise every iteration makes two passes over tiles of at most ``tile_size`` pixels (plus a
    3 px halo): the first sums the squares the kernel predictor's ``rms_norm`` needs over the whole
    image, the second applies it; the result equals the whole-image one to float32 rounding. Memory
    beyond one tile's working set: x, the residual (3 x H x W float32 each) and the input.
    ``on_tiles(n)`` is called as work completes (see :func:`count_tile_steps` for the total);
    ``cancel()`` is checked between tiles and iterations and raises :class:`DenoiseCancelled`.

    ``cache_logits=True`` keeps the first pass's kernel logits (9 x H x W float32 more) so that the
    second pass only normalises and filters instead of recomputing the convolutions: about half the
    work, at 2.5 times the state's memory. The result is the same.
    """
    plane = np.asarray(plane)
    if plane.ndim != 3 or plane.shape[0] != 3:
        raise ValueError(f"denoise_plane expects a 3 x H x W plane, got shape {plane.shape}")
    height, width = plane.shape[1:]
    check_size(height, width)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if tile_size is not None:
        _check_tile_size(tile_size)
    device = torch.device(device)
    channels_last = getattr(network, "channels_last", True)
    weights = _weights(network, device)
    iterations = network.iterations

    def report(n=1):
        if on_tiles is not None:
            on_tiles(n)

    def check_cancel():
        if cancel is not None and cancel():
            raise DenoiseCancelled("IDF denoising was cancelled")

    check_cancel()
    with torch.inference_mode():
        source = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None]
        if _single_tile(height, width, tile_size):
            x = normalise_input(source.to(device))
            residual = None
            for i in range(iterations):
                check_cancel()
                x, residual = iterate_whole(weights, x, residual, i, precision=precision, channels_last=channels_last)
                report()
            return denormalise_output(x)[0].cpu().numpy()

        # State on the host; tiles (with their halo) travel to the device.
        x = normalise_input(source)
        residual = None
        tiles = tile_grid(height, width, tile_size)
        logit_cache = torch.empty((1, 9, height, width), dtype=torch.float32) if cache_logits else None
        for i in range(iterations):
            x, residual = iterate_tiled(
                weights,
                x,
                residual,
                i,
                tiles,
                precision=precision,
                device=device,
                channels_last=channels_last,
                logit_cache=logit_cache,
                before_tile=check_cancel,
                after_tile=report,
            )
        return denormalise_output(x)[0].numpy()


def tile_grid(height: int, width: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) of the tiles :func:`denoise_plane` uses, row by row."""
    rows, cols = _tile_bounds(height, tile_size), _tile_bounds(width, tile_size)
    return [(r0, r1, c0, c1) for r0, r1 in rows for c0, c1 in cols]


def iterate_tiled(
    weights: dict[str, torch.Tensor],
    x: torch.Tensor,
    residual: torch.Tensor | None,
    i: int,
    tiles: list[tuple[int, int, int, int]],
    *,
    precision: str = "fp32",
    device=None,
    channels_last: bool = True,
    logit_cache: torch.Tensor | None = None,
    before_tile: Callable[[], None] | None = None,
    after_tile: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration over tiles, the same as :func:`iterate_whole` to float rounding.

    ``x`` and ``residual`` (1 x 3 x H x W, float32, host) are consumed: their buffers become the new
    residual and the output. ``logit_cache`` (1 x 9 x H x W) keeps pass 1's logits for pass 2.
    """
    device = x.device if device is None else torch.device(device)
    height, width = x.shape[-2:]
    kernels = _Kernels(weights, None if residual is None else residual.to(device), channels_last=channels_last)
    x_scale = (EPS + _rms(x)).to(device)
    d, mode = _geometry(i)
    # Pass 1: the sum of squares of the 73 feature/correlation channels over the whole image.
    total = torch.zeros((), dtype=torch.float64, device=device)
    for r0, r1, c0, c1 in tiles:
        if before_tile is not None:
            before_tile()
        logits, part = _tile_logits(kernels, x, x_scale, i, r0, r1, c0, c1, precision, device)
        if logit_cache is not None:
            logit_cache[..., r0:r1, c0:c1] = logits
        total += part
        if after_tile is not None:
            after_tile()
    scale = (EPS + torch.sqrt(total / (73 * height * width))).float()
    # Pass 2: recompute (or fetch) each tile's logits, normalise, filter. The old residual is no longer
    # needed, so its buffer receives the output.
    out = torch.empty_like(x) if residual is None else residual
    for r0, r1, c0, c1 in tiles:
        if before_tile is not None:
            before_tile()
        if logit_cache is not None:
            logits = logit_cache[..., r0:r1, c0:c1].to(device) / scale
        else:
            logits, _ = _tile_logits(kernels, x, x_scale, i, r0, r1, c0, c1, precision, device)
            logits /= scale
        near = _window(x, r0 - d, r1 + d, c0 - d, c1 + d, mode).to(device)
        out[..., r0:r1, c0:c1] = _apply_kernels(logits, near, d).to(out.device)
        if after_tile is not None:
            after_tile()
    return out, x.sub_(out)  # the old x buffer becomes the new residual x - output


# --------------------------------------------------------------------------- weight files
def _validate_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    missing = [key for key in STATE_SHAPES if key not in state]
    unexpected = sorted(key for key in state if key not in STATE_SHAPES)
    problems = []
    if missing:
        problems.append("missing key(s): " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected key(s): " + ", ".join(unexpected))
    for key, shape in STATE_SHAPES.items():
        if key not in state:
            continue
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            problems.append(f"{key} is not a tensor ({type(tensor).__name__})")
        elif tuple(tensor.shape) != shape:
            problems.append(f"{key} has shape {tuple(tensor.shape)}, expected {shape}")
        elif not tensor.is_floating_point():
            problems.append(f"{key} has dtype {tensor.dtype}, expected a floating-point type")
        elif not bool(torch.isfinite(tensor).all()):
            problems.append(f"{key} holds non-finite values (NaN or inf)")
    if problems:
        raise CheckpointError(f"{source} does not hold IDF weights: " + "; ".join(problems))
    return {key: state[key].float() for key in STATE_SHAPES}


def network_from_state(state: dict[str, torch.Tensor], source: str = "state dict") -> IDFDenoiser:
    network = IDFDenoiser()
    network.block.load_state_dict({key.removeprefix("block."): t for key, t in _validate_state(state, source).items()})
    return network.eval().requires_grad_(False)


def load_idf_weights(path: str | os.PathLike) -> IDFDenoiser:
    """Build an :class:`IDFDenoiser` from a ``.safetensors`` file of exactly the 6 block tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"IDF weights file not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'.
    if len(head) < 9 or head[8:9] != b"{":
        raise CheckpointError(f"{path} is not a .safetensors file (IDF weights are read from safetensors only)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"could not read {path} as safetensors: {exc}") from exc
    return network_from_state(state, str(path))


def load_bundled_idf() -> IDFDenoiser:
    """The bundled ``idf_g_15`` network (cite the paper; Apache 2.0, see bundled/IDF_LICENSE.txt)."""
    return load_idf_weights(BUNDLED_WEIGHTS)


# --------------------------------------------------------------------------- the authors' .ckpt
class _Inert:
    """Stands in for any class or function a pickle names: records its arguments, runs nothing."""

    _global = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_kwargs", kwargs)
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert(*args)

    def __setstate__(self, state):
        object.__setattr__(self, "_state", state)

    # Containers a pickle may fill through APPEND/SETITEM on an object of an unknown class.
    def append(self, item):
        pass

    def extend(self, items):
        pass

    def __setitem__(self, key, value):
        pass

    def __repr__(self):
        return f"<inert {self._global}>"


def _inert_global(module: str, name: str) -> type:
    return type(name, (_Inert,), {"_global": f"{module}.{name}", "__module__": "napari_clipdenoise.inert"})


# Only what torch's own tensor serialisation needs, and plain containers.
_ALLOWED_TORCH = {
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch.nn.parameter", "Parameter"),
}
_ALLOWED_BUILTINS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): codecs.encode,  # how pickle protocol 2 stores bytes
}


def _is_storage_or_dtype(module: str, name: str) -> bool:
    if module != "torch":
        return False
    obj = getattr(torch, name, None)
    return isinstance(obj, torch.dtype) or (isinstance(obj, type) and name.endswith("Storage"))


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_BUILTINS:
            return _ALLOWED_BUILTINS[(module, name)]
        if (module, name) in _ALLOWED_TORCH or _is_storage_or_dtype(module, name):
            return super().find_class(module, name)
        if module == "torch" and name == "Size":
            return torch.Size
        return _inert_global(module, name)


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` whose Unpickler never resolves arbitrary globals."""

    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def read_idf_lightning_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The 6 block tensors of an authors' ``pretrained_models/<name>.ckpt`` (prefix ``model.`` removed).

    The file is a PyTorch Lightning checkpoint (a torch zip archive) whose pickle also holds the
    authors' configuration objects. It is unpickled with a restricted Unpickler: tensor and storage
    rebuilds, dtypes and plain containers resolve; every other global becomes an inert placeholder
    that records its arguments and never calls anything, so no code from the file runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"IDF checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch (zip) checkpoint")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        checkpoint = torch.load(
            io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule
        )
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign file is a checkpoint problem
        raise CheckpointError(f"could not read {path} as a torch checkpoint: {type(exc).__name__}: {exc}") from exc
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no 'state_dict' (not a Lightning checkpoint)")
    block = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.block.")}
    missing = [key for key in STATE_SHAPES if key not in block]
    if missing:
        raise CheckpointError(f"{path}: the state_dict lacks " + ", ".join("model." + key for key in missing))
    return _validate_state(block, str(path))
