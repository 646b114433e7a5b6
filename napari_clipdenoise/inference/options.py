"""The inference options: one frozen, validated object every face builds and passes on.

The command line, the widgets, the napari functions, the dask engine and the
evaluation all describe a run with an :class:`InferenceOptions`. It is defined
and validated here, once; "auto" values (device, precision, batch size, memory
format) are resolved in one place, :func:`napari_clipdenoise.inference.device.resolve_options`,
and the intensity range in :func:`napari_clipdenoise.inference.normalize.estimate_range`.
This module imports neither torch nor numpy at import time, so help texts and
widgets can show the defaults for free.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

#: Default largest tile edge in pixels; see docs/tiling.md for the measurement behind it.
DEFAULT_TILE_SIZE = 1024
#: Overlap that keeps every output pixel >= ~112 px from a cut tile edge (docs/tiling.md).
DEFAULT_OVERLAP = 256
#: The network's size rule: tiles, strides and padding are multiples of this.
ALIGN = 16
#: Precision names; "auto" picks per device (``resolve_precision``).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Device names offered by the faces; ``cuda:N`` is accepted too, and ``gpu`` means ``cuda``.
DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_ALIASES = {"gpu": "cuda"}
#: Named intensity rules (``estimate_range``); a ``(low, high)`` pair fixes the range.
INTENSITY_MODES = ("auto", "percentile", "dtype")
#: Units the data can be declared in; with one, "auto" uses the model's own scale when it was trained in it.
UNITS = ("HU",)
#: How a volume is cut into planes for the 2D network: XY only, or XY, XZ and YZ averaged.
PLANES = ("xy", "ortho")

_UNSET: Any = object()


class OptionError(ValueError):
    """An inference option has a value that cannot be used.

    ``option`` is the field name (``tile_size``...); ``problem`` says what is wrong
    without naming the option, and names other options as ``{tile_size}``, so each
    face can name them in its own syntax (``--tile-size`` on the command line).
    """

    def __init__(self, option: str, problem: str):
        self.option = option
        self.problem = problem
        super().__init__(self.render())

    def render(self, names: dict[str, str] | None = None) -> str:
        """The message with options named by ``names`` (field name -> e.g. ``--tile-size``)."""
        import re

        names = names or {}
        problem = re.sub(r"\{([a-z_]+)\}", lambda m: names.get(m.group(1), m.group(1)), self.problem)
        return f"{names.get(self.option, self.option)} {problem}"


class OptionTypeError(OptionError, TypeError):
    """An option of the wrong kind (e.g. a complex ``output_dtype``); both an OptionError and a TypeError."""


def default_overlap(tile_size) -> int:
    """The overlap used when none is given: :data:`DEFAULT_OVERLAP`, or the most a smaller tile allows.

    The seam bound of docs/tiling.md needs each output pixel to come from a tile
    where it lies about 112 px or more from a cut edge, which the blending gives with
    a 256 px overlap. Tiles too small for that get ``tile - 16`` (a stride of 16 px):
    the bound is kept as far as the tile allows, at the cost of computing pixels
    many times (:func:`napari_clipdenoise.inference.tiling.plan_tiles` reports it).
    """
    if tile_size is None:
        return DEFAULT_OVERLAP
    smallest = min(tile_size) if isinstance(tile_size, tuple) else int(tile_size)
    return min(DEFAULT_OVERLAP, max(0, smallest - ALIGN))


def _whole(value, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= minimum


def _tile_pair(value):
    if value is None:
        return None
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(_whole(t, ALIGN) and int(t) % ALIGN == 0 for t in pair):
        raise OptionError(
            "tile_size",
            f"must be a positive multiple of {ALIGN}, a (height, width) pair of them, or None for one pass per"
            f" plane, got {value!r}",
        )
    height, width = int(pair[0]), int(pair[1])
    return height if height == width and not isinstance(value, (tuple, list)) else (height, width)


def _device_name(value) -> str:
    if value is None:
        return "auto"
    if not isinstance(value, str):
        if hasattr(value, "type"):  # a torch.device
            return str(value)
        raise OptionError("device", f"must be a string such as 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps', got {value!r}")
    name = DEVICE_ALIASES.get(value.strip().lower(), value.strip().lower())
    base, _, index = name.partition(":")
    base = DEVICE_ALIASES.get(base, base)
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise OptionError("device", f"must be one of {', '.join(DEVICES)}, 'cuda:N' or 'gpu', got {value!r}")
    return f"{base}:{index}" if index else base


def _intensity_range(value):
    """A mode name, one ``(low, high)`` pair, or one pair per channel group (a tuple of pairs)."""
    if isinstance(value, str):
        if value not in INTENSITY_MODES:
            raise OptionError(
                "intensity_range", f"must be one of {', '.join(INTENSITY_MODES)} or (low, high), got {value!r}"
            )
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, (tuple, list)) for v in value):
        return tuple(_pair(v, constant_ok=True) for v in value)  # measured ranges: a constant channel is copied
    if isinstance(value, (tuple, list)):
        return _pair(value)
    raise OptionError("intensity_range", f"must be 'auto', 'percentile', 'dtype' or (low, high), got {value!r}")


def _pair(value, *, constant_ok: bool = False) -> tuple[float, float]:
    import math

    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise OptionError("intensity_range", f"must be (low, high) numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not (low < high or (constant_ok and low == high)):
        raise OptionError("intensity_range", f"must be (low, high) with finite low < high, got {value!r}")
    return (low, high)


def _units(value) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, str):
        for name in UNITS:
            if value.strip().lower() == name.lower():
                return name
    raise OptionError("units", f"must be None (not declared) or one of {', '.join(UNITS)}, got {value!r}")


def _planes(value) -> str:
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in PLANES:
        raise OptionError("planes", f"must be one of {', '.join(PLANES)}, got {value!r}")
    return name


def _channel_list(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, numbers.Integral) else value
    try:
        chosen = tuple(items)
    except TypeError:
        chosen = ()
    if not chosen or not all(_whole(c, 0) for c in chosen) or len(set(chosen)) != len(chosen):
        raise OptionError("channels", f"must be None or distinct channel indices >= 0 such as (0, 2), got {value!r}")
    return tuple(sorted(int(c) for c in chosen))


def _dtype_name(value) -> str | None:
    if value is None:
        return None
    import numpy as np

    try:
        dtype = np.dtype(value)
    except TypeError:
        raise OptionTypeError(
            "output_dtype", f"must be a numpy dtype such as 'uint16' or 'float32', got {value!r}"
        ) from None
    if dtype.kind not in "uif":
        raise OptionTypeError("output_dtype", f"must be an integer or floating-point dtype, got {dtype}")
    return dtype.name


@dataclass(frozen=True)
class InferenceOptions:
    """How to run a denoiser over an image: tiling, device, precision, intensities, output dtype.

    Every field is checked when the object is made (:class:`OptionError` names the
    field); ``"auto"``/``None`` values are resolved later, for the hardware that runs
    the job (:func:`napari_clipdenoise.inference.device.resolve_options`).

    Parameters
    ----------
    tile_size : int, (int, int) or None
        Largest tile edge in pixels (a multiple of 16), or a (height, width) pair;
        None runs each plane in one pass.
    overlap : int or None
        Pixels (at least) shared by neighbouring tiles; None derives it from the
        tile size (:func:`default_overlap`).
    balance_tiles : bool
        Shrink tiles axis by axis to the smallest size needing no more tiles.
    batch_size : int or None
        Tiles per forward pass; None: 1 on the CPU, about 16 Mpx worth on a GPU.
    device : str
        ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``gpu``
        (= ``cuda``) or ``mps``.
    precision : str
        ``auto``, ``fp32``, ``bf16`` or ``fp16``; ``auto`` picks bf16 where the
        hardware runs it natively.
    channels_last : bool or None
        Memory format; None: on for CPU and CUDA.
    intensity_range : str, (float, float) or tuple of pairs
        ``auto``, ``percentile``, ``dtype``, a fixed ``(low, high)``, or one pair per
        channel group (as the dask engine passes the ranges it measured once).
    output_dtype : str or None
        Result dtype; None keeps the input's.
    pad_multiple : int
        Planes are reflect-padded to a multiple of this (16; the reference evaluation uses 32).
    units : str or None
        The unit the values are in, when known: ``"HU"`` (CT in Hounsfield units; DICOM
        CT and CT NIfTI readers declare it). With ``intensity_range="auto"`` a model
        trained in that unit is then fed on its own scale (``ldct``: [-1024, 3072]).
        None: not declared.
    planes : str
        ``"xy"`` (default): a volume is denoised XY plane by plane. ``"ortho"``: the
        XY, XZ and YZ planes of every Z x Y x X volume are denoised and averaged in
        float32 (needs a Z axis; see ``inference/ortho.py`` for its memory bounds).
    tta : bool
        Test-time augmentation: average the network's outputs over the eight
        flips/rotations of each plane (in float32, each tiled like a normal run);
        eight times the compute, one float32 plane of extra memory.
    channels : tuple of int or None
        Indices along the channel axis to denoise; the others are copied unchanged.
        None denoises every channel (an alpha channel is always copied).
    """

    tile_size: int | tuple[int, int] | None = DEFAULT_TILE_SIZE
    overlap: int | None = None
    balance_tiles: bool = True
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    intensity_range: Any = "auto"
    output_dtype: str | None = None
    pad_multiple: int = ALIGN
    units: str | None = None
    planes: str = "xy"
    tta: bool = False
    channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        tile = _tile_pair(self.tile_size)
        object.__setattr__(self, "tile_size", tile)
        if self.overlap is not None:
            if not _whole(self.overlap, 0):
                raise OptionError("overlap", f"must be a whole number of pixels >= 0, got {self.overlap!r}")
            object.__setattr__(self, "overlap", int(self.overlap))
            smallest = None if tile is None else (min(tile) if isinstance(tile, tuple) else tile)
            if smallest is not None and self.overlap >= smallest:
                raise OptionError("overlap", f"({self.overlap}) must be smaller than {{tile_size}} ({smallest})")
        if not isinstance(self.balance_tiles, bool):
            raise OptionError("balance_tiles", f"must be True or False, got {self.balance_tiles!r}")
        if self.batch_size is not None:
            if not _whole(self.batch_size, 1):
                raise OptionError(
                    "batch_size", f"must be None (per device) or an integer >= 1, got {self.batch_size!r}"
                )
            object.__setattr__(self, "batch_size", int(self.batch_size))
        object.__setattr__(self, "device", _device_name(self.device))
        precision = "auto" if self.precision is None else self.precision
        if precision not in PRECISIONS:
            raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "precision", precision)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise OptionError("channels_last", f"must be None, True or False, got {self.channels_last!r}")
        object.__setattr__(self, "intensity_range", _intensity_range(self.intensity_range))
        object.__setattr__(self, "output_dtype", _dtype_name(self.output_dtype))
        if not _whole(self.pad_multiple, ALIGN) or self.pad_multiple % ALIGN:
            raise OptionError("pad_multiple", f"must be a positive multiple of {ALIGN}, got {self.pad_multiple!r}")
        object.__setattr__(self, "units", _units(self.units))
        object.__setattr__(self, "planes", _planes(self.planes))
        if not isinstance(self.tta, bool):
            raise OptionError("tta", f"must be True or False, got {self.tta!r}")
        object.__setattr__(self, "channels", _channel_list(self.channels))

    # ------------------------------------------------------------------ derived values
    @property
    def effective_overlap(self) -> int:
        """``overlap``, or the one derived from the tile size when it is None."""
        return default_overlap(self.tile_size) if self.overlap is None else self.overlap

    def replace(self, **changes) -> InferenceOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, options: InferenceOptions | dict | None = None, **overrides) -> InferenceOptions:
        """``options`` (an instance, a mapping or None for the defaults) with ``overrides`` applied.

        Keyword names that are not options raise ``TypeError`` listing the valid ones.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if isinstance(options, dict):
            unknown += sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown inference option(s) {', '.join(unknown)}; options are {', '.join(sorted(names))}")
        if options is None:
            base = cls()
        elif isinstance(options, cls):
            base = options
        elif isinstance(options, dict):
            base = cls(**options)
        else:
            raise TypeError(f"options must be an InferenceOptions, a dict or None, got {type(options).__name__}")
        changes = {k: v for k, v in overrides.items() if v is not _UNSET}
        return base.replace(**changes) if changes else base

    def as_record(self) -> dict:
        """A JSON-serialisable dict of the fields (for provenance and job identities)."""
        record = dataclasses.asdict(self)
        for key, value in record.items():
            if isinstance(value, tuple):
                record[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return record


@dataclass(frozen=True)
class ResolvedOptions:
    """:class:`InferenceOptions` with every "auto" decided for one machine (see ``resolve_options``)."""

    options: InferenceOptions
    device: Any  # torch.device
    precision: str
    batch_size: int
    channels_last: bool

    @property
    def tile_size(self):
        return self.options.tile_size

    @property
    def overlap(self) -> int:
        return self.options.effective_overlap

    def describe(self) -> str:
        """One line for logs and the command line's header."""
        tile = (
            "whole plane" if self.tile_size is None else f"tiles up to {self.tile_size} px, overlap {self.overlap} px"
        )
        return f"{self.device}, {self.precision}, {tile}, batch {self.batch_size}"


__all__ = [
    "ALIGN",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "DEVICES",
    "INTENSITY_MODES",
    "PLANES",
    "PRECISIONS",
    "UNITS",
    "InferenceOptions",
    "OptionError",
    "ResolvedOptions",
    "default_overlap",
]
