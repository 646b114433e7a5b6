"""``denoise``: any image (numpy or lazy dask/zarr) in, the same shape and dtype out.

normalize (global) -> per plane and channel group: pad/tile -> batch -> network
-> stitch -> de-normalize -> cast back to the input dtype.

:func:`plan_denoise` makes every decision before a pixel is processed (axes,
channel groups, their intensity ranges, the tile plan); :func:`denoise` carries
a plan out. Both take the run's :class:`~.options.InferenceOptions`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DenoiseCancelled
from .axes import AxesLayout, guess_axes, parse_axes
from .normalize import IntensityRange, clip_note, estimate_range, sample_planes, to_dtype
from .options import InferenceOptions, OptionError
from .planes import PlaneReader, check_finite, network_input
from .runners import check_window, family_notes, family_of, plane_runner, steps_per_plane
from .scale_fit import WARNING, scale_warnings
from .tile_grid import TilePlan, plan_tiles

logger = logging.getLogger(__name__)

_SUPPORTED_KINDS = "uif"


@dataclass
class ChannelGroup:
    """Channels denoised together: an RGB triplet for RGB models, else one channel."""

    channels: tuple[int, ...]
    scale: IntensityRange | None = None
    replicate: bool = False  # grayscale fed to an RGB model: copy to 3 channels, average the outputs


@dataclass(frozen=True)
class ImageWindow:
    """The array given to ``denoise`` is the part at (``top``, ``left``) of a larger image.

    Used by the dask engine: each block is read with the input rows and columns
    its tiles need (:meth:`~.tile_grid.TilePlan.read_range`) and denoised on the
    whole image's tile grid, so it equals the matching part of a whole-image
    ``denoise()``. ``exact=False`` tiles the block on its own instead (the engine's
    ``halo=N`` mode) and keeps only the whole image's upsampling grid.
    """

    full_height: int
    full_width: int
    top: int
    left: int
    exact: bool = True


@dataclass
class DenoisePlan:
    """What ``denoise`` will do, worked out before any pixel is processed."""

    layout: AxesLayout
    axes_guessed: bool
    groups: list[ChannelGroup]
    passthrough: tuple[int, ...]  # channels copied unchanged (alpha)
    plane_indices: list[tuple[int, ...]]
    tiles: TilePlan
    output_dtype: np.dtype
    options: InferenceOptions
    shape: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)  # a run appends what it finds (e.g. float16 clipping)
    family: str = "clip"
    steps_per_plane: int = 0  # progress units per channel group and plane (runners.steps_per_plane; TTA included)
    ortho: object = None  # an ortho.OrthoPlan when options.planes == "ortho"
    rotated_tiles: TilePlan | None = None  # test-time augmentation: the tiles of the plane turned by 90 degrees

    @property
    def tiles_per_plane(self) -> int:
        return self.steps_per_plane or len(self.tiles)

    @property
    def total_tiles(self) -> int:
        active = len([g for g in self.groups if not g.scale.is_constant])
        if self.ortho is not None:
            return self.ortho.tiles_per_volume * len(self.ortho.volumes) * active
        return self.tiles_per_plane * len(self.plane_indices) * active

    @property
    def warnings(self) -> list[str]:
        """The notes that are warnings (data and model do not fit...), each starting with ``"warning: "``."""
        return [note for note in self.notes if note.startswith(WARNING)]

    def intensity_ranges(self) -> list[dict]:
        """The range used for each channel group and the rule that chose it, for provenance and reports.

        ``low``/``high`` given back as ``intensity_range`` (one pair per group)
        reproduce the run whatever rule chose them.
        """
        return [
            {"channels": list(g.channels), "low": float(g.scale.low), "high": float(g.scale.high), "rule": g.scale.rule}
            for g in self.groups
        ]


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


def _in_channels(model) -> int:
    if isinstance(model, (int, np.integer)) and not isinstance(model, bool):
        return int(model)
    return int(model.in_channels)


def _model_scale(model):
    """The model's input scale (``InputScale``), None when unknown or only a channel count was given."""
    return None if isinstance(model, (int, np.integer)) else getattr(model, "input_scale", None)


def plan_denoise(
    image,
    model,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
    options: InferenceOptions | dict | None = None,
    window: ImageWindow | None = None,
    **option_overrides,
) -> DenoisePlan:
    """Validate the input and decide axes, channel groups, intensity ranges and tiling.

    Parameters
    ----------
    image : array-like
        As for :func:`denoise`. Sampled (a bounded number of pixels) only when an
        intensity range has to be estimated.
    model : DenoisingModel, ModelFacts or int
        The model (or what is known of it without loading: ``model.facts.ModelFacts``;
        or just the number of input channels, 1 or 3, of a CLIP-family model). Its
        ``input_scale`` drives ``intensity_range="auto"`` for data declared in that unit
        (``units``); its family decides how planes are run (``runners``).
    axes, rgb
        As for :func:`denoise`.
    options : InferenceOptions, dict or None
        The run's options; ``option_overrides`` change single fields.
    window : ImageWindow, optional
        ``image`` is a part of a larger image (see :class:`ImageWindow`).

    Returns
    -------
    DenoisePlan
    """
    options = InferenceOptions.build(options, **option_overrides)
    if options.planes == "ortho" and window is not None:
        raise OptionError("planes", "'ortho' needs whole volumes; image windows (dask blocks) are denoised in XY")
    validate_image(image)
    in_channels = _in_channels(model)
    family = family_of(model)
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
    sample_axis = layout.channel is not None and layout.axes[layout.channel] == "S"
    if rgb and in_channels == 3:
        groups = [ChannelGroup((0, 1, 2))]
        passthrough = (3,) if channel_count == 4 else ()
        notes.append("RGB channels denoised together" + (", alpha copied unchanged" if passthrough else ""))
    elif rgb and channel_count == 4:  # RGBA with a one-channel model: colours one by one, alpha as it is
        groups = [ChannelGroup((c,)) for c in range(3)]
        passthrough = (3,)
        notes.append("RGB channels denoised one by one, alpha copied unchanged")
    elif sample_axis and channel_count == 2:  # grey + alpha samples (PNG LA, TIFF with an extra sample)
        groups = [ChannelGroup((0,), replicate=in_channels == 3)]
        passthrough = (1,)
        notes.append("grey denoised, alpha copied unchanged")
    else:
        groups = [ChannelGroup((c,), replicate=in_channels == 3) for c in range(channel_count)]
        passthrough = ()
        if channel_count > 1:
            notes.append(f"{channel_count} channels denoised one by one")
    if options.channels is not None:
        groups, passthrough = _select_channels(groups, options.channels, channel_count, in_channels, layout)
        notes.append(f"channels {', '.join(map(str, options.channels))} denoised, the others copied unchanged")

    plane_indices = list(itertools.product(*(range(shape[a]) for a in layout.planes)))
    model_scale = _model_scale(model)
    samples = _assign_ranges(
        groups, options.intensity_range, image, layout, plane_indices, units=options.units, model_scale=model_scale
    )
    if options.units is not None:
        notes.append(f"values declared in {options.units}")
    notes.append(
        "intensity ranges: " + "; ".join(f"[{g.scale.low:g}, {g.scale.high:g}] ({g.scale.rule})" for g in groups)
    )
    notes.extend(
        scale_warnings(
            model_name=getattr(model, "name", None),
            model_scale=model_scale,
            units=options.units,
            mode=options.intensity_range,
            dtype=np.dtype(image.dtype),
            rgb=bool(rgb) and channel_count in (3, 4),
            samples=samples,
            ranges=[(g.scale.low, g.scale.high) for g in groups],
        )
    )
    out_dtype = np.dtype(options.output_dtype) if options.output_dtype is not None else np.dtype(image.dtype)
    notes += family_notes(family, groups)
    check_window(family, window, shape[layout.y], shape[layout.x])
    tiles = _tile_plan(shape[layout.y], shape[layout.x], options, window)
    steps = steps_per_plane(family, shape[layout.y], shape[layout.x], options, tiles)
    if family == "clip" and tiles.pixel_factor > 4:
        notes.append(
            f"tiles of {tiles.tile_height} x {tiles.tile_width} px with a {options.effective_overlap} px overlap compute"
            f" each pixel {tiles.pixel_factor:.1f} times; larger tiles are faster"
        )
    rotated = None
    if options.tta:
        if window is not None:
            raise OptionError(
                "tta", "cannot be used on a window of a larger image (the dask block engine): run it on the whole image"
            )
        if options.planes == "ortho":
            raise OptionError("tta", "cannot be combined with planes='ortho'; use one of them")
        rotated = _tile_plan(shape[layout.x], shape[layout.y], options, None)
        turned = steps_per_plane(family, shape[layout.x], shape[layout.y], options, rotated)
        steps = 4 * steps + 4 * turned
        notes.append("test-time augmentation: the average of the 8 flips/rotations (8 times the compute)")
    ortho = None
    if options.planes == "ortho":
        from .ortho import plan_ortho

        ortho = plan_ortho(layout, shape, options, family)
        notes.append(ortho.describe())
    return DenoisePlan(
        layout,
        guessed,
        groups,
        passthrough,
        plane_indices,
        tiles,
        out_dtype,
        options,
        shape,
        notes,
        family=family,
        steps_per_plane=steps,
        ortho=ortho,
        rotated_tiles=rotated,
    )


def _select_channels(groups, chosen, channel_count: int, in_channels: int, layout: AxesLayout):
    """Keep the groups made only of chosen channels, split the others; every channel not chosen is copied."""
    beyond = [c for c in chosen if c >= channel_count]
    if beyond:
        where = f"axis {layout.axes[layout.channel]}" if layout.channel is not None else "no channel axis"
        raise OptionError(
            "channels",
            f"names channel(s) {', '.join(map(str, beyond))} but the image has {channel_count}"
            f" ({where}, axes {layout.axes}); channels are numbered from 0",
        )
    keep = set(chosen)
    kept = [g for g in groups if set(g.channels) <= keep]
    covered = {c for g in kept for c in g.channels}
    kept += [ChannelGroup((c,), replicate=in_channels == 3) for c in sorted(keep - covered)]
    kept.sort(key=lambda g: g.channels[0])
    passthrough = tuple(c for c in range(channel_count) if c not in keep)
    return kept, passthrough


def _assign_ranges(
    groups: list[ChannelGroup], rule, image, layout: AxesLayout, plane_indices, *, units=None, model_scale=None
) -> list[np.ndarray] | None:
    """Give every channel group its intensity range: fixed ones as given, the others estimated once.

    Returns the sampled values (None when every range was given).
    """
    if isinstance(rule, tuple) and rule and isinstance(rule[0], tuple):  # one (low, high) per group
        if len(rule) != len(groups):
            raise OptionError(
                "intensity_range", f"has {len(rule)} (low, high) pairs but the image has {len(groups)} channel group(s)"
            )
        for group, (low, high) in zip(groups, rule, strict=True):
            group.scale = IntensityRange(low, high, "given")
        return None
    if isinstance(rule, tuple):
        for group in groups:
            group.scale = IntensityRange(*rule, "given")
        return None
    samples = sample_planes(PlaneReader(image, layout), plane_indices, lazy=not isinstance(image, np.ndarray))
    for sample in samples:
        check_finite(sample, "in the sampled planes")
    for group in groups:
        group.scale = estimate_range(
            [s[list(group.channels)] for s in samples], image.dtype, mode=rule, units=units, model_scale=model_scale
        )
    return samples


def _tile_plan(height: int, width: int, options: InferenceOptions, window: ImageWindow | None) -> TilePlan:
    overlap, pad = options.effective_overlap, options.pad_multiple
    if window is None:
        return plan_tiles(height, width, options.tile_size, overlap, pad, options.balance_tiles)
    whole = plan_tiles(window.full_height, window.full_width, options.tile_size, overlap, pad, options.balance_tiles)
    if window.exact:
        return whole.window(window.top, window.left, height, width)
    own = plan_tiles(height, width, (whole.tile_height, whole.tile_width), overlap, pad, balance=False)
    return own.on_grid(window.top, window.left, whole.full_size)


def denoise(
    image,
    model,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
    options: InferenceOptions | dict | None = None,
    plan: DenoisePlan | None = None,
    window: ImageWindow | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    out=None,
    **option_overrides,
) -> np.ndarray:
    """Denoise a 2D/3D/nD image with a denoising model.

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
    options : InferenceOptions or dict, optional
        Tiling, device, precision, intensity and output settings of the run; any
        of its fields can also be given as a keyword (``tile_size=512,
        precision="fp32"``...). See :class:`~.options.InferenceOptions`:
        ``tile_size`` (int, (h, w) or None for one pass), ``overlap`` (None: from
        the tile size), ``balance_tiles``, ``batch_size``, ``device`` (``"auto"``:
        cuda > mps > cpu), ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``,
        ``"fp16"``), ``channels_last``, ``intensity_range`` (``"auto"``,
        ``"percentile"``, ``"dtype"``, ``(low, high)`` or one pair per channel
        group), ``output_dtype`` (default: the input's; integers are rounded and
        clipped), ``pad_multiple``, ``units`` (None or ``"HU"``: with ``"auto"``, a
        model trained in that unit gets its own scale), ``planes`` (``"xy"``, or
        ``"ortho"``: XY, XZ and YZ planes averaged, see ``inference/ortho.py``),
        ``tta`` (True: average over the eight flips/rotations, 8x the compute) and
        ``channels`` (indices to denoise; the other channels are copied).
    plan : DenoisePlan, optional
        A plan made by :func:`plan_denoise` for this image (its options are used),
        so a lazy input is not sampled twice.
    window : ImageWindow, optional
        ``image`` is a part of a larger image: denoise it on that image's tile grid.
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
    from .device import resolve_options
    from .tiling import as_cancel_check  # imports torch: plan_denoise alone does not

    model = load_model(model)
    if plan is None:
        plan = plan_denoise(image, model, axes=axes, rgb=rgb, options=options, window=window, **option_overrides)
    elif options is not None or option_overrides or window is not None:
        raise TypeError("pass either plan= or options (and window), not both: the plan holds its options")
    shape = tuple(int(s) for s in image.shape)
    if plan.shape and plan.shape != shape:
        raise ValueError(f"the plan was made for shape {plan.shape}, the image has shape {shape}")
    for note in plan.notes:
        (logger.warning if note.startswith(WARNING) else logger.info)(note)
    if plan.family != model.family:
        raise ValueError(f"the plan was made for a {plan.family} model, not this {model.family} model")
    resolved = resolve_options(plan.options, family=model.family)
    should_stop = as_cancel_check(cancel)
    runner = plane_runner(model, resolved)
    result = out if out is not None else np.empty(shape, plan.output_dtype)
    if out is not None and tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected the image's shape {shape}")
    reader = PlaneReader(image, plan.layout)
    if plan.ortho is not None:
        from .ortho import denoise_ortho

        return denoise_ortho(image, plan, runner, result, reader, progress=progress, should_stop=should_stop)
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
        check_finite(plane, f"at plane {plane_index}")
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
            write = _row_writer(group, target[channels], plan.output_dtype, plan.notes)
            if plan.rotated_tiles is not None:
                _run_tta(runner, plane[channels], group, plan, write, advance, should_stop)
                continue
            runner(
                plane[channels],
                plan.tiles,
                transform=network_input(group),
                sink=write,
                on_tiles=advance,
                cancel=should_stop,
            )
        if not direct:
            result[reader.index(plane_index)] = reader.to_original(target)
    return result


def _row_writer(
    group: ChannelGroup, target: np.ndarray, dtype: np.dtype, notes: list[str] | None = None
) -> Callable[[int, int, np.ndarray], None]:
    """Per finished band of rows: de-normalise, cast and store into ``target`` (``C x Y x X``).

    A float16 result beyond its range is clipped; the first time, ``notes`` gets
    :func:`~.normalize.clip_note`'s line (and it is logged).
    """
    dtype = np.dtype(dtype)
    narrow_float = dtype.kind == "f" and dtype.itemsize < 4

    def sink(start: int, stop: int, rows: np.ndarray) -> None:
        if group.replicate:
            rows = rows.mean(axis=0, keepdims=True)
        values = group.scale.denormalize(rows)
        if narrow_float and notes is not None:
            note = clip_note(values, dtype)
            if note is not None and note not in notes:
                notes.append(note)
                logger.warning(note)
        target[:, start:stop] = to_dtype(values, dtype)

    return sink


def network_planes(image, plan: DenoisePlan, plane_indices=None):
    """Yield ``(plane_index, group, values)``: each plane's channel groups on the network's [0, 1] scale.

    The values ``denoise`` gives the network for ``plan`` (before tiling; a
    grayscale group of an RGB model is not yet repeated, see
    ``ChannelGroup.replicate``). Constant groups, which ``denoise`` copies, are
    skipped. Used by self-supervised adaptation to train on exactly what
    inference will see.

    Parameters
    ----------
    image : array-like
        The image ``plan`` was made for.
    plan : DenoisePlan
        From :func:`plan_denoise`.
    plane_indices : list of tuple, optional
        A subset of ``plan.plane_indices`` (default: all).
    """
    reader = PlaneReader(image, plan.layout)
    for plane_index in plan.plane_indices if plane_indices is None else plane_indices:
        plane = reader(plane_index)
        check_finite(plane, f"at plane {plane_index}")
        for group in plan.groups:
            if group.scale.is_constant:
                continue
            channels = slice(group.channels[0], group.channels[-1] + 1)
            yield plane_index, group, group.scale.normalize(plane[channels])


def _dihedral(array: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """A view of a ``C x H x W`` array flipped left-right (``flip``), then turned ``turns`` x 90 degrees."""
    return np.rot90(array[..., ::-1] if flip else array, turns, axes=(1, 2))


def _run_tta(runner, values: np.ndarray, group: ChannelGroup, plan: DenoisePlan, write, on_tiles, cancel) -> None:
    """Test-time augmentation of one channel group of one plane.

    Each of the eight flips/rotations of the plane is denoised exactly as a normal
    run of that transformed plane would be (its own tile plan); every output band
    is added, through the same transform, into one float32 accumulator in the
    plane's own orientation, which is averaged and written once.
    """
    _, height, width = values.shape
    total = np.zeros((len(group.channels), height, width), np.float32)
    for turns in range(4):
        for flip in (False, True):
            frame = _dihedral(total, turns, flip)  # the accumulator seen in the transformed orientation

            def add(start: int, stop: int, rows: np.ndarray, frame=frame) -> None:
                if group.replicate:
                    rows = rows.mean(axis=0, keepdims=True)
                frame[:, start:stop] += rows

            runner(
                _dihedral(values, turns, flip),
                plan.tiles if turns % 2 == 0 else plan.rotated_tiles,
                transform=network_input(group),
                sink=add,
                on_tiles=on_tiles,
                cancel=cancel,
            )
    total *= np.float32(1 / 8)
    write(0, height, total)
