"""Choosing a torch device, a precision and a batch size: where "auto" options are resolved.

:func:`resolve_options` is the one place an :class:`~.options.InferenceOptions`
becomes concrete for the machine that runs the job (on a dask cluster, each
worker resolves the client's options for its own hardware).
"""

from __future__ import annotations

import functools

import torch

from .options import InferenceOptions, OptionError, ResolvedOptions


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if present, else Apple MPS, else CPU; otherwise validated as given."""
    if isinstance(device, torch.device):
        device = str(device)
    name = InferenceOptions(device=device).device  # validates the name, maps "gpu" to "cuda"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(
                "device", f"{name!r} was asked for but torch sees no CUDA GPU; use device='cpu' or device='auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise OptionError(
                "device", f"{name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
            )
    if resolved.type == "mps" and not _mps_available():
        raise OptionError(
            "device", f"{name!r} was asked for but Apple MPS is not available; use device='cpu' or device='auto'"
        )
    return resolved


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


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
    precision = InferenceOptions(precision=precision).precision  # validates the name
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    return precision


def default_batch_size(device: torch.device, tile_size) -> int:
    """Tiles per forward pass: one on CPU (no gain from batching there), ~16 Mpx-worth on GPUs.

    ``tile_size``: an int, a (height, width) pair or None.
    """
    if device.type == "cpu" or tile_size is None:
        return 1
    height, width = tile_size if isinstance(tile_size, (tuple, list)) else (tile_size, tile_size)
    return max(1, (4096 * 4096) // (height * width))


def resolve_options(options: InferenceOptions, *, family: str = "clip") -> ResolvedOptions:
    """Decide device, precision, batch size and memory format of ``options`` for this machine.

    ``family`` is the model's (``"clip"`` or ``"idf"``). IDF runs in fp32 unless bf16
    is asked for: its bf16 output agrees with fp32 only to ~70 dB (max 6 grey levels,
    benchmarks/idf_tiling.py), so "auto" does not pick it; it has no fp16 path.

    Raises
    ------
    OptionError
        The device asked for is not present here, or the model family cannot run at
        the precision asked for (the message says what to use).
    """
    device = resolve_device(options.device)
    if family == "idf":
        if options.precision == "fp16":
            raise OptionError("precision", "fp16 is not available for the IDF model; use 'fp32' (default) or 'bf16'")
        precision = "bf16" if options.precision == "bf16" else "fp32"
    else:
        precision = resolve_precision(options.precision, device)
    batch_size = options.batch_size or default_batch_size(device, options.tile_size)
    channels_last = options.channels_last if options.channels_last is not None else device.type in ("cpu", "cuda")
    return ResolvedOptions(options, device, precision, batch_size, channels_last)
