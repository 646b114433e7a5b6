"""``denoise``: any image (numpy or lazy dask/zarr) in, the same shape and dtype out.

normalize (global) -> per plane and channel group: pad/tile -> batch -> network
-> stitch -> de-normalize -> cast back to the input dtype.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DenoiseCancelled
from .axes import AxesLayout, guess_axes, parse_axes
from .defaults import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from .normalize import IntensityRange, estimate_range, sample_planes, to_dtype
from .tiling import ALIGN, as_cancel_check, count_tiles

logger = logging.getLogger(__name__)

_SUPPORTED_KINDS = "uif"


@dataclass
class ChannelGroup:
    """Channels denoised together: an RGB triplet for RGB models, else one channel."""

    channels: tuple[int, ...]
    scale: IntensityRange | None = None
    replicate: bool = False  # grayscale fed to an RGB model: copy to 3 channels, average the outputs


@dataclass
class DenoisePlan:
    """What ``denoise`` will do, worked out before any pixel is processed."""

    layout: AxesLayout
    axes_guessed: bool
    groups: list[ChannelGroup]
    passthrough: tuple[int, ...]  # channels copied unchanged (alpha)
    plane_indices: list[tuple[int, ...]]
    tiles_per_plane: int
    output_dtype: np.dtype
    notes: list[str] = field(default_factory=list)

    @property
    def total_tiles(self) -> int:
        return self.tiles_per_plane * len(self.plane_indices) * len([g for g in self.groups if not g.scale.is_constant])


def validate_image(image) -> None:
    """Raise TypeError/ValueError for inputs ``denoise`` cannot handle (before reading pixels)."""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        raise TypeError(f"image must be an array (numpy, dask or zarr), got {type(image).__name__}")
    dtype = np.dtype(image.dtype)
    if dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(
            f"image dtype {dtype} is not supported; use an integer or floating-point image"
            + (" (convert booleans with image.astype(np.uint8))" if dtype.kind == "b" else "")
        )
    if len(image.shape) < 2:
        raise ValueError(f"image must have at least 2 dimensions (Y, X), got shape {tuple(image.shape)}")
    if 0 in tuple(image.shape):
        raise ValueError(f"image is empty (shape {tuple(image.shape)}); nothing to denoise")


def _check_finite(values: np.ndarray, where: str) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(
            f"image contains {bad} NaN or infinite value(s) {where}; replace them first (e.g. np.nan_to_num)"
        )


class _PlaneReader:
    """Reads one ``C x Y x X`` plane (C first, 1 when there is no channel axis) lazily."""

    def __init__(self, image, layout: AxesLayout):
        self.image = image
        self.layout = layout

    def index(self, plane_index: tuple[int, ...]) -> tuple:
        key: list = [slice(None)] * len(self.layout.axes)
        for axis, i in zip(self.layout.planes, plane_index, strict=True):
            key[axis] = i
        return tuple(key)

    def kept_axes(self) -> list[int]:
        return [a for a in range(len(self.layout.axes)) if a not in self.layout.planes]

    def __call__(self, plane_index: tuple[int, ...]) -> np.ndarray:
        return self._to_cyx(np.asarray(self.image[self.index(plane_index)]))

    def view(self, array: np.ndarray, plane_index: tuple[int, ...]) -> np.ndarray:
        """A ``C x Y x X`` view of one plane of the numpy ``array`` (writes go into ``array``)."""
        return self._to_cyx(array[self.index(plane_index)])

    def _to_cyx(self, plane: np.ndarray) -> np.ndarray:
        kept = self.kept_axes()
        order = ([kept.index(self.layout.channel)] if self.layout.channel is not None else []) + [
            kept.index(self.layout.y),
            kept.index(self.layout.x),
        ]
        plane = np.transpose(plane, order)
        return plane if self.layout.channel is not None else plane[np.newaxis]

    def to_original(self, plane_cyx: np.ndarray) -> np.ndarray:
        """Inverse of the transpose in ``__call__``, for writing results back."""
        if self.layout.channel is None:
            plane_cyx = plane_cyx[0]
            present = [self.layout.y, self.layout.x]
        else:
            present = [self.layout.channel, self.layout.y, self.layout.x]
        kept = self.kept_axes()
        return np.transpose(plane_cyx, np.argsort([kept.index(a) for a in present]))


def plan_denoise(
    image,
    in_channels: int,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
    tile_size: int | tuple[int, int] | None = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    intensity_range="auto",
    output_dtype=None,
    pad_multiple: int = ALIGN,
    balance_tiles: bool = True,
) -> DenoisePlan:
    """Validate the input and decide axes, channel groups, normalisation and tiling."""
    validate_image(image)
    shape = tuple(int(s) for s in image.shape)
    guessed = axes is None
    layout = parse_axes(axes if axes is not None else guess_axes(shape, rgb=rgb), shape)
    notes = [f"axes {layout.axes} ({'guessed' if guessed else 'given'}) for shape {shape}"]
    channel_count = shape[layout.channel] if layout.channel is not None else 1
    if rgb is None:
        rgb = (
            layout.channel is not None
            and channel_count in (3, 4)
            and (layout.axes[layout.channel] == "S" or layout.channel_last)
        )
    elif rgb and channel_count not in (3, 4):
        raise ValueError(f"rgb=True needs a channel axis of 3 or 4 samples, got {channel_count} (axes {layout.axes})")
    if rgb and in_channels == 3:
        groups = [ChannelGroup((0, 1, 2))]
        passthrough = (3,) if channel_count == 4 else ()
        notes.append("RGB channels denoised together" + (", alpha copied unchanged" if passthrough else ""))
    else:
        groups = [ChannelGroup((c,), replicate=in_channels == 3) for c in range(channel_count)]
        passthrough = ()
        if channel_count > 1:
            notes.append(f"{channel_count} channels denoised one by one")

    plane_indices = list(itertools.product(*(range(shape[a]) for a in layout.planes)))
    reader = _PlaneReader(image, layout)
    samples = sample_planes(reader, plane_indices)
    for sample in samples:
        _check_finite(sample, "in the sampled planes")
    for group in groups:
        group.scale = estimate_range([s[list(group.channels)] for s in samples], image.dtype, mode=intensity_range)
    if output_dtype is None:
        out_dtype = np.dtype(image.dtype)
    else:
        out_dtype = np.dtype(output_dtype)
        if out_dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(f"output_dtype must be an integer or float dtype, got {out_dtype}")
    tiles = count_tiles(shape[layout.y], shape[layout.x], tile_size, overlap, pad_multiple, balance_tiles)
    return DenoisePlan(layout, guessed, groups, passthrough, plane_indices, tiles, out_dtype, notes)


def denoise(
    image,
    model,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
    tile_size: int | tuple[int, int] | None = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    balance_tiles: bool = True,
    batch_size: int | None = None,
    device=None,
    precision: str = "auto",
    channels_last: bool | None = None,
    intensity_range="auto",
    output_dtype=None,
    pad_multiple: int = ALIGN,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    out=None,
) -> np.ndarray:
    """Denoise a 2D/3D/nD image with a CLIPDenoiser model.

    Parameters
    ----------
    image : array-like, shape (..., Y, X) with optional channel axis
        numpy, dask or zarr array of any integer or float dtype. Lazy inputs are
        read one plane at a time.
    model : DenoisingModel, str or path
        A loaded model, a registry name or a checkpoint path (see ``load_model``).
    axes : str, optional
        e.g. ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"CZYX"``, ``"TZYX"``; guessed from the
        shape when omitted (the guess is logged and available from ``plan_denoise``).
    rgb : bool, optional
        Whether a channel axis of 3/4 holds RGB(A) colour. Default: yes when it is
        the last axis (or lettered ``S``).
    tile_size : int, (int, int) or None
        Largest tile edge (multiple of 16), or a (height, width) pair; None runs
        each plane in one pass.
    overlap : int
        Pixels (at least) shared by neighbouring tiles, blended linearly.
    balance_tiles : bool
        Shrink tiles, axis by axis, to the smallest size that covers the plane
        with no more tiles (a 2048 px axis: three 864 px tiles instead of three
        of 1024), so fewer pixels are computed twice. False uses ``tile_size``
        exactly (the dask engine does, to keep its blocks on one tile grid).
    batch_size : int, optional
        Tiles per forward pass; default depends on the device.
    device : str or torch.device, optional
        ``"auto"`` (default): cuda > mps > cpu.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; ``"auto"`` picks bf16 where the hardware runs it natively.
    channels_last : bool, optional
        Memory format; default on for CPU and CUDA.
    intensity_range : "auto", "percentile", "dtype" or (low, high)
        How values map to the network's [0, 1] scale; computed once per image.
    output_dtype : dtype, optional
        Default: the input dtype (integers rounded and clipped).
    pad_multiple : int
        Plane padding multiple (16; the reference evaluation uses 32).
    progress : callable(done, total), optional
        Called after each batch of tiles.
    cancel : callable or threading.Event, optional
        Checked before each batch; raises ``DenoiseCancelled``.
    out : array-like, optional
        Where to write the result (e.g. a zarr array of the input's shape);
        by default a new numpy array is returned.

    Returns
    -------
    numpy.ndarray (or ``out``)
        Same shape as ``image``; dtype ``output_dtype`` or the input dtype.
    """
    from ..model.registry import load_model
    from .device import default_batch_size, prepared_network, resolve_device, resolve_precision
    from .tiling import tiled_inference

    model = load_model(model)
    plan = plan_denoise(
        image,
        model.in_channels,
        axes=axes,
        rgb=rgb,
        tile_size=tile_size,
        overlap=overlap,
        intensity_range=intensity_range,
        output_dtype=output_dtype,
        pad_multiple=pad_multiple,
        balance_tiles=balance_tiles,
    )
    for note in plan.notes:
        logger.info(note)
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    if channels_last is None:
        channels_last = torch_device.type in ("cpu", "cuda")
    if batch_size is None:
        batch_size = default_batch_size(torch_device, tile_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    should_stop = as_cancel_check(cancel)

    # a BN-folded copy in the compute dtype (the model itself is not modified); see device.prepare_network
    network = prepared_network(model.network, torch_device, precision, channels_last)
    shape = tuple(int(s) for s in image.shape)
    result = out if out is not None else np.empty(shape, plan.output_dtype)
    if out is not None and tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected the image's shape {shape}")
    reader = _PlaneReader(image, plan.layout)
    total, done = plan.total_tiles, 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress(done, total)

    if progress:
        progress(0, total)
    for plane_index in plan.plane_indices:
        if should_stop():
            raise DenoiseCancelled("denoising was cancelled")
        plane = reader(plane_index)
        _check_finite(plane, f"at plane {plane_index}")
        if all(group.scale.is_constant for group in plan.groups):
            # nothing to denoise: copy exactly (no float round trip for wide integers)
            result[reader.index(plane_index)] = reader.to_original(plane).astype(plan.output_dtype)
            continue
        # Finished rows are written straight into the result (or a plane buffer in the output dtype for
        # non-numpy ``out``): no float32 copy of the plane is ever held, only tile-sized pieces.
        direct = isinstance(result, np.ndarray)
        target = reader.view(result, plane_index) if direct else np.empty(plane.shape, plan.output_dtype)
        for channel in plan.passthrough:
            target[channel] = to_dtype(plane[channel].astype(np.float32), plan.output_dtype)
        for group in plan.groups:
            channels = slice(group.channels[0], group.channels[-1] + 1)  # groups are contiguous channel runs
            if group.scale.is_constant:
                target[channels] = to_dtype(plane[channels].astype(np.float32), plan.output_dtype)
                continue
            if model.in_channels == 1 and len(group.channels) != 1:
                raise AssertionError("channel groups for 1-channel models hold one channel")
            tiled_inference(
                network,
                plane[channels],
                tile_size=tile_size,
                overlap=overlap,
                batch_size=batch_size,
                device=torch_device,
                precision=precision,
                channels_last=channels_last,
                pad_multiple=pad_multiple,
                on_tiles=advance,
                cancel=should_stop,
                transform=_network_input(group),
                sink=_row_writer(group, target[channels], plan.output_dtype),
                balance_tiles=balance_tiles,
            )
        if not direct:
            result[reader.index(plane_index)] = reader.to_original(target)
    return result


def _network_input(group: ChannelGroup) -> Callable[[np.ndarray], np.ndarray]:
    """Per tile: raw values -> the network's [0, 1] scale (grayscale repeated for RGB models)."""

    def transform(tile: np.ndarray) -> np.ndarray:
        values = group.scale.normalize(tile)
        return np.broadcast_to(values, (3, *values.shape[1:])) if group.replicate else values

    return transform


def _row_writer(group: ChannelGroup, target: np.ndarray, dtype: np.dtype) -> Callable[[int, int, np.ndarray], None]:
    """Per finished band of rows: de-normalise, cast and store into ``target`` (``C x Y x X``)."""

    def sink(start: int, stop: int, rows: np.ndarray) -> None:
        if group.replicate:
            rows = rows.mean(axis=0, keepdims=True)
        target[:, start:stop] = to_dtype(group.scale.denormalize(rows), dtype)

    return sink
