"""Choosing a torch device and a precision for inference."""

from __future__ import annotations

import functools

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: "str | torch.device | None" = None) -> torch.device:
    """``None``/``"auto"``: CUDA if present, else Apple MPS, else CPU; otherwise validated as given."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but MPS is not available; use device='cpu' or 'auto'")
    return resolved


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16), where bf16 autocast is fast."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``"auto"``: bf16 on CUDA GPUs that support it (else fp16), bf16 on CPUs with native bf16, else fp32."""
    if precision is None or precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto' or one of {PRECISIONS}, got {precision!r}")
    return precision


def default_batch_size(device: torch.device, tile_size: int | None) -> int:
    """Tiles per forward pass: one on CPU (no gain from batching there), ~16 Mpx-worth on GPUs."""
    if device.type == "cpu" or tile_size is None:
        return 1
    return max(1, (4096 * 4096) // (tile_size * tile_size))
