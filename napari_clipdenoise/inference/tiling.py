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

import numpy as np
import torch

from ..errors import DenoiseCancelled
from .options import ALIGN
from .tile_grid import TilePlan, plan_tiles, reflect_indices

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
    overlap: int | None = 64,
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
    plan: TilePlan | None = None,
) -> np.ndarray | None:
    """Apply ``fn`` to a ``C x H x W`` float32 plane tile by tile; return ``C_out x H x W`` float32.

    ``fn`` maps a ``B x C x h x w`` tensor on ``device`` (h, w multiples of 16) to
    ``B x C_out x h x w``; a ``fn`` with ``accepts_tile_geometry`` also gets each
    batch's :class:`~.tile_grid.TileGeometry`. The tiles are those of ``plan`` when
    given (e.g. a window of a larger image's plan, :meth:`TilePlan.window`), else of
    ``plan_tiles(H, W, tile_size, overlap, pad_multiple, balance_tiles)``.
    ``on_tiles(n)`` is called after each batch with the number of tiles it
    finished; ``cancel`` (callable or Event) is checked before each batch and raises
    :class:`DenoiseCancelled`. ``sink(start, stop, rows)`` receives finished rows
    instead of a returned array. On out-of-memory (CUDA or CPU allocator) the batch
    is halved, then (for a plan made here) the tile size, down to 64 px.
    """
    device = torch.device(device)
    should_stop = as_cancel_check(cancel)
    plane = np.asarray(plane)
    if plane.ndim != 3:
        raise ValueError(f"plane must be C x H x W, got shape {plane.shape}")
    _, height, width = plane.shape
    if plan is None:
        plan = plan_tiles(height, width, tile_size, overlap, pad_multiple, balance_tiles)
    elif (plan.height, plan.width) != (height, width):
        raise ValueError(f"the tile plan is for {plan.height} x {plan.width} pixels, the plane has {height} x {width}")
    while True:
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
            if not plan.is_whole or current <= 64:
                hint = "use a smaller tile size or the CPU" if not plan.is_whole else "use the CPU (device='cpu')"
                raise torch.OutOfMemoryError(
                    f"out of {device} memory with {plan.tile_height} x {plan.tile_width} px tiles and batch 1; {hint}"
                ) from None
            smaller = max(64, current // 2 // ALIGN * ALIGN)
            plan = plan_tiles(height, width, smaller, min(plan.overlap, smaller // 2), plan.pad_multiple, plan.balance)
            batch_size = 1
            if device.type == "cuda":
                torch.cuda.empty_cache()


class _ShrinkTiles(Exception):
    pass


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
        geometry = plan.geometry(batch) if getattr(fn, "accepts_tile_geometry", False) else None
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


__all__ = ["as_cancel_check", "autocast_context", "tiled_inference"]
