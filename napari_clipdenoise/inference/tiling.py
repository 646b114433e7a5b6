"""Model-agnostic tiled inference over one ``C x H x W`` plane.

The plane is reflect-padded once (bottom/right) so that every tile has the same
size, a multiple of 16; tiles start on multiples of 16 so each sees the same
pixel phase as a whole-image pass (and networks that accept a TileGeometry get
the whole image's upsampling grid); outputs are blended with a crossfade in the
middle of each overlap and accumulated in float32. ``tile_size=None`` is one whole pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DenoiseCancelled
from .tile_grid import ALIGN, balanced_tile, round_up
from .tile_grid import starts as _starts
from .tile_grid import stride as _stride

ProgressCallback = Callable[[int, int], None]


def as_cancel_check(cancel) -> Callable[[], bool]:
    """Accept None, a callable returning bool, or an Event-like object with ``is_set``."""
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return cancel
    raise TypeError(f"cancel must be a callable or an Event-like object, got {type(cancel).__name__}")


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1D blending weight of one tile.

    Where a tile shares ``n`` pixels with a neighbour, its weight is 0 over the
    outer 7/16 of the shared part, rises linearly over the middle eighth and is 1
    beyond: each output pixel comes from the tile where it lies deepest, with a
    short crossfade so there is no seam. (Tile edges are the least accurate part
    of a tile; see docs/tiling.md.)
    """
    weight = np.ones(length, np.float32)
    for shared, side in ((before, 1), (after, -1)):
        if shared <= 0:
            continue
        distance = np.arange(shared, dtype=np.float32) + 0.5  # from this tile's edge
        band = max(shared / 8.0, 1.0)
        rising = np.clip((distance - (shared - band) / 2.0) / band, 0.0, 1.0)
        if side == 1:
            weight[:shared] = np.minimum(weight[:shared], rising)
        else:
            weight[length - shared :] = np.minimum(weight[length - shared :], rising[::-1])
    return weight


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one plane go."""

    height: int
    width: int
    padded_height: int
    padded_width: int
    tile_height: int
    tile_width: int
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    @property
    def boxes(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.starts_y for x in self.starts_x]

    def weights_1d(self, axis: int) -> dict[int, np.ndarray]:
        starts = self.starts_y if axis == 0 else self.starts_x
        tile = self.tile_height if axis == 0 else self.tile_width
        ramps = {}
        for i, start in enumerate(starts):
            before = starts[i - 1] + tile - start if i > 0 else 0
            after = start + tile - starts[i + 1] if i + 1 < len(starts) else 0
            ramps[start] = _ramp(tile, max(before, 0), max(after, 0))
        return ramps

    def blend_weights(self, axis: int) -> dict[int, np.ndarray]:
        """``weights_1d`` divided by their sum along the axis: the 2D weights ``outer(wy, wx)`` sum to 1."""
        ramps = self.weights_1d(axis)
        tile = self.tile_height if axis == 0 else self.tile_width
        total = np.zeros(self.padded_height if axis == 0 else self.padded_width, np.float64)
        for start, ramp in ramps.items():
            total[start : start + tile] += ramp
        return {start: (ramp / total[start : start + tile]).astype(np.float32) for start, ramp in ramps.items()}


def _tile_pair(tile_size) -> tuple[int, int] | None:
    """``tile_size`` as (height, width), validated; None stays None."""
    if tile_size is None:
        return None
    pair = tuple(tile_size) if isinstance(tile_size, (tuple, list)) else (tile_size, tile_size)
    if len(pair) != 2 or any(
        isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < ALIGN or t % ALIGN for t in pair
    ):
        raise ValueError(
            f"tile_size must be a positive multiple of {ALIGN}, a (height, width) pair of them, or None for one pass,"
            f" got {tile_size!r}"
        )
    return int(pair[0]), int(pair[1])


def plan_tiles(
    height: int, width: int, tile_size, overlap: int, pad_multiple: int = ALIGN, balance: bool = True
) -> TilePlan:
    """Tile layout for an ``height x width`` plane.

    ``tile_size`` (an int, or a (height, width) pair) is the largest tile. Tiles
    shrink to the (padded) image when it is smaller; with ``balance`` they also
    shrink, axis by axis, to the smallest size that needs no more tiles
    (:func:`balanced_tile`), which cuts the pixels computed twice. The stride
    ``tile - overlap`` is rounded down to a multiple of 16.
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty {height} x {width} plane")
    if pad_multiple % ALIGN:
        raise ValueError(f"pad_multiple must be a multiple of {ALIGN}, got {pad_multiple}")
    base_h, base_w = round_up(height, pad_multiple), round_up(width, pad_multiple)
    pair = _tile_pair(tile_size)
    if pair is None:
        return TilePlan(height, width, base_h, base_w, base_h, base_w, (0,), (0,))
    if overlap < 0 or overlap >= min(pair):
        raise ValueError(f"overlap must be >= 0 and smaller than tile_size ({tile_size}), got {overlap}")
    tile_h, tile_w = min(pair[0], base_h), min(pair[1], base_w)
    if balance:
        tile_h, tile_w = balanced_tile(base_h, tile_h, overlap), balanced_tile(base_w, tile_w, overlap)
    stride_h, stride_w = _stride(tile_h, overlap), _stride(tile_w, overlap)
    return TilePlan(
        height,
        width,
        base_h,
        base_w,
        tile_h,
        tile_w,
        tuple(_starts(base_h, tile_h, stride_h)),
        tuple(_starts(base_w, tile_w, stride_w)),
    )


def reflect_pad(plane: np.ndarray, padded_height: int, padded_width: int) -> np.ndarray:
    """Reflect-pad the bottom/right of a ``C x H x W`` array (repeats reflection for tiny images)."""
    _, height, width = plane.shape
    if (height, width) == (padded_height, padded_width):
        return plane
    return np.pad(plane, ((0, 0), (0, padded_height - height), (0, padded_width - width)), mode="reflect")


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (
        isinstance(exc, (torch.OutOfMemoryError, MemoryError))
        or "out of memory" in text
        or "can't allocate memory" in text
    )


def tiled_inference(
    fn: Callable[[torch.Tensor], torch.Tensor],
    plane: np.ndarray,
    *,
    tile_size: int | None = 512,
    overlap: int = 64,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    out_channels: int | None = None,
    pad_multiple: int = ALIGN,
    on_tiles: Callable[[int], None] | None = None,
    cancel=None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    balance_tiles: bool = True,
    sink: Callable[[int, int, np.ndarray], None] | None = None,
) -> np.ndarray | None:
    """Apply ``fn`` to a ``C x H x W`` float32 plane tile by tile; return ``C_out x H x W`` float32.

    ``fn`` maps a ``B x C x h x w`` tensor on ``device`` (h, w multiples of 16) to
    ``B x C_out x h x w``. ``on_tiles(n)`` is called after each batch with the
    number of tiles it finished; ``cancel`` (callable or Event) is checked before
    each batch and raises :class:`DenoiseCancelled`. On out-of-memory (CUDA or
    CPU allocator) the batch is halved, then the tile size, down to 64 px.
    """
    device = torch.device(device)
    should_stop = as_cancel_check(cancel)
    plane = np.asarray(plane)
    if plane.ndim != 3:
        raise ValueError(f"plane must be C x H x W, got shape {plane.shape}")
    _, height, width = plane.shape
    while True:
        plan = plan_tiles(height, width, tile_size, overlap, pad_multiple, balance_tiles)
        try:
            return _run_plan(
                fn,
                plane,
                plan,
                batch_size,
                device,
                precision,
                channels_last,
                out_channels,
                on_tiles,
                should_stop,
                transform,
                sink,
            )
        except _ShrinkTiles:
            current = max(plan.tile_height, plan.tile_width)
            if current <= 64:
                raise torch.OutOfMemoryError(
                    f"out of device memory even with 64 px tiles and batch 1 on {device}; use device='cpu'"
                ) from None
            tile_size = max(64, current // 2 // ALIGN * ALIGN)
            overlap = min(overlap, tile_size // 2)
            batch_size = 1
            if device.type == "cuda":
                torch.cuda.empty_cache()


class _ShrinkTiles(Exception):
    pass


def reflect_indices(length: int, padded: int) -> np.ndarray:
    """Source index of each of ``padded`` positions when a length-``length`` axis is reflect-padded at its end.

    Matches ``np.pad(..., mode="reflect")`` including repeated reflection when
    the padding is longer than the axis.
    """
    if length == 1:
        return np.zeros(padded, np.intp)
    index = np.arange(padded) % (2 * (length - 1))
    return np.where(index < length, index, 2 * (length - 1) - index)


def _read_tile(plane: np.ndarray, y: int, x: int, th: int, tw: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The ``C x th x tw`` tile at (y, x) of the reflect-padded plane, without padding the whole plane."""
    _, height, width = plane.shape
    if y + th <= height and x + tw <= width:
        return plane[:, y : y + th, x : x + tw]
    return plane[:, rows[y : y + th, None], cols[None, x : x + tw]]


class _HostStaging:
    """Builds the host-side batch tensor; on CUDA in pinned memory, copied on a side stream.

    Two pinned buffers alternate so the next batch can be filled while the
    previous one is still being copied; an event per buffer guards its reuse.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.buffers: list = [None, None]
        self.events: list = [None, None]
        self.turn = 0
        self.stream = torch.cuda.Stream(device) if self.cuda else None

    def to_device(self, tiles: list[np.ndarray]) -> torch.Tensor:
        if not self.cuda:
            return torch.from_numpy(np.stack(tiles)).to(self.device)
        slot, self.turn = self.turn, self.turn ^ 1
        if self.events[slot] is not None:
            self.events[slot].synchronize()
        shape = (len(tiles), *tiles[0].shape)
        buffer = self.buffers[slot]
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = self.buffers[slot] = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        np.stack(tiles, out=buffer.numpy())
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            x = buffer.to(self.device, non_blocking=True)
            self.events[slot] = torch.cuda.Event()
            self.events[slot].record(self.stream)
        compute.wait_stream(self.stream)
        x.record_stream(compute)
        return x


class _RowStitcher:
    """Blends weighted tile outputs into a band of rows on the device and hands finished rows on.

    Tiles arrive row-major; once tiles start at row ``y``, rows above ``y`` get no
    more contributions and go to ``sink(start, stop, rows)`` (float32 numpy,
    ``C_out x n x W``, valid only during the call). Memory: one band of
    ``C_out x tile_height x padded_width`` floats, whatever the image height.
    """

    def __init__(self, plan: TilePlan, device: torch.device, precision: str, sink):
        self.plan, self.device, self.precision, self.sink = plan, device, precision, sink
        self.weights_y = {s: torch.from_numpy(w).to(device) for s, w in plan.blend_weights(0).items()}
        self.weights_x = {s: torch.from_numpy(w).to(device) for s, w in plan.blend_weights(1).items()}
        self.band: torch.Tensor | None = None
        self.top = 0

    def add(self, y: int, x: int, tile: torch.Tensor) -> None:
        th, tw = self.plan.tile_height, self.plan.tile_width
        if self.band is None:
            self.band = torch.zeros(
                (tile.shape[0], th, self.plan.padded_width), dtype=torch.float32, device=self.device
            )
        if y != self.top:
            self._emit(y)
            shift = y - self.top
            self.band[:, : th - shift] = self.band[:, shift:].clone()
            self.band[:, th - shift :] = 0
            self.top = y
        weight = self.weights_y[y][:, None] * self.weights_x[x][None, :]
        self.band[:, :, x : x + tw].addcmul_(tile, weight)

    def finish(self) -> None:
        self._emit(self.plan.height)

    def _emit(self, stop: int) -> None:
        stop = min(stop, self.plan.height)
        if stop <= self.top:
            return
        rows = self.band[:, : stop - self.top, : self.plan.width]
        if not bool(torch.isfinite(rows).all()):
            raise FloatingPointError(
                f"the network produced NaN/Inf at precision {self.precision}; try precision='fp32'"
            )
        self.sink(self.top, stop, rows.cpu().numpy())


def _run_plan(
    fn,
    plane,
    plan,
    batch_size,
    device,
    precision,
    channels_last,
    out_channels,
    on_tiles,
    should_stop,
    transform=None,
    sink=None,
):
    rows_index = reflect_indices(plan.height, plan.padded_height)
    cols_index = reflect_indices(plan.width, plan.padded_width)
    result = []
    if sink is None:

        def sink(start, stop, rows):
            if not result:
                result.append(np.empty((rows.shape[0], plan.height, plan.width), np.float32))
            result[0][:, start:stop] = rows

    transform = transform or (lambda tile: tile.astype(np.float32, copy=False))
    stitcher = _RowStitcher(plan, device, precision, sink)
    staging = _HostStaging(device)
    boxes = plan.boxes
    th, tw = plan.tile_height, plan.tile_width
    index = 0
    while index < len(boxes):
        if should_stop():
            raise DenoiseCancelled("denoising was cancelled")
        batch = boxes[index : index + batch_size]
        geometry = None
        if getattr(fn, "accepts_tile_geometry", False):
            from ..model.network import TileGeometry

            geometry = TileGeometry(tuple(batch), (plan.padded_height, plan.padded_width))
        try:
            tiles = staging.to_device(
                [transform(_read_tile(plane, y, x, th, tw, rows_index, cols_index)) for y, x in batch]
            )
            output = _forward(fn, tiles, device, precision, channels_last, geometry)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size = max(1, batch_size // 2)
                continue
            raise _ShrinkTiles() from exc
        if out_channels is not None and output.shape[1] != out_channels:
            raise ValueError(f"the network returned {output.shape[1]} channels, expected {out_channels}")
        for (y, x), tile_out in zip(batch, output, strict=True):
            stitcher.add(y, x, tile_out)
        index += len(batch)
        if on_tiles:
            on_tiles(len(batch))
    stitcher.finish()
    return result[0] if result else None


def _forward(
    fn, tiles: torch.Tensor, device: torch.device, precision: str, channels_last: bool, geometry=None
) -> torch.Tensor:
    """Run ``fn`` on a batch already on ``device``; returns float32 on ``device``."""
    x = tiles
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (
        contextlib.nullcontext() if getattr(fn, "handles_precision", False) else autocast_context(device, precision)
    )
    with torch.inference_mode(), autocast:
        y = fn(x) if geometry is None else fn(x, geometry=geometry)
    return y.float()


def count_tiles(
    height: int, width: int, tile_size, overlap: int, pad_multiple: int = ALIGN, balance: bool = True
) -> int:
    return len(plan_tiles(height, width, tile_size, overlap, pad_multiple, balance))


__all__ = [
    "TilePlan",
    "plan_tiles",
    "balanced_tile",
    "tiled_inference",
    "count_tiles",
    "reflect_pad",
    "round_up",
    "as_cancel_check",
    "autocast_context",
]
