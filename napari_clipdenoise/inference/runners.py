"""How each model family runs over one plane: the only place the pipeline looks at the family.

``denoise`` hands every channel group of every plane to a runner. The runner of
the CLIP family streams the plan's tiles through the prepared network
(:func:`~.tiling.tiled_inference`, tiles independent, blended). IDF normalises
and gates with statistics of the whole image at every one of its iterations, so
independent tiles change its result (benchmarks/idf_tiling.py: 4-5% of pixels off
by more than one grey level); its runner works on the whole plane, exactly, with
:func:`napari_clipdenoise.model.idf.denoise_plane` streaming tiles of at most
:data:`IDF_TILE` pixels through every iteration (docs/tiling.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .options import InferenceOptions, OptionError

#: IDF's tile edge for its exact streamed run: measured fastest of 256/512/whole on the CPU.
IDF_TILE = 256
#: Up to this many pixels per plane IDF keeps its kernel logits between the two passes of an
#: iteration (36 B/px more, about half the work); larger planes recompute them (24 B/px state only).
IDF_CACHE_PIXELS = 32 * 1024 * 1024

FAMILIES = ("clip", "idf")


def family_of(model) -> str:
    """``"clip"`` or ``"idf"`` for a DenoisingModel, a network, or an int (a CLIP model's channel count)."""
    if isinstance(model, (int, np.integer)):
        return "clip"
    if isinstance(getattr(model, "family", None), str):  # a DenoisingModel or ModelFacts
        return model.family
    return getattr(getattr(model, "network", model), "family", "clip")


def idf_tile(options: InferenceOptions) -> int | None:
    """The tile edge IDF streams with: :data:`IDF_TILE`, or less when ``tile_size`` asks for less; None is whole."""
    if options.tile_size is None:
        return None
    smallest = min(options.tile_size) if isinstance(options.tile_size, tuple) else options.tile_size
    return min(IDF_TILE, smallest)


def steps_per_plane(family: str, height: int, width: int, options: InferenceOptions, tiles) -> int:
    """Progress units one channel group of one plane reports (tiles for CLIP, tile passes for IDF)."""
    if family == "idf":
        from ..model.idf_grid import count_tile_steps

        return count_tile_steps(height, width, idf_tile(options))
    return len(tiles)


def tiling_text(family: str, options: InferenceOptions) -> str | None:
    """How a plane is cut for this family, in words, where it differs from CLIP's tiles; else None."""
    if family != "idf":
        return None
    tile = idf_tile(options)
    streamed = "in one pass" if tile is None else f"streamed exactly in {tile} px tiles"
    return f"whole planes (IDF uses whole-image statistics; {streamed})"


def family_notes(family: str, groups) -> list[str]:
    """What a user should know about running this family on these channel groups."""
    if family == "idf" and any(group.replicate for group in groups):
        return [
            "the IDF model was trained on RGB photographs; a grayscale channel is copied to R, G and B, where"
            " IDF's colour-correlation cue is zero, so it denoises grayscale much less well (scikit-image's"
            " camera, Gaussian sigma 15: 26.9 dB, NL-means 30.8 dB; see docs/tiling.md)"
        ]
    return []


def check_window(family: str, window, height: int, width: int) -> None:
    """IDF cannot run on part of a plane: its statistics are the whole image's."""
    if (
        family == "idf"
        and window is not None
        and (window.top, window.left, window.full_height, window.full_width)
        != (
            0,
            0,
            height,
            width,
        )
    ):
        raise OptionError(
            "window",
            "covers part of a plane, but the IDF model needs whole planes (its normalisation uses whole-image"
            " statistics); give it whole planes",
        )


def plane_runner(model, resolved) -> Callable:
    """``run(values, tile_plan, *, transform, sink, on_tiles, cancel)`` for one channel group of one plane.

    ``values`` is the group's raw ``C x H x W`` plane, ``transform`` maps raw values
    (a tile or the whole plane) to the network's input, ``sink(start, stop, rows)``
    receives finished rows on the [0, 1] scale.
    """
    if family_of(model) == "idf":
        return _idf_runner(model, resolved)
    return _clip_runner(model, resolved)


def _clip_runner(model, resolved):
    from .prepare import prepared_network
    from .tiling import tiled_inference

    # a BN-folded copy in the compute dtype (the model itself is not modified); see prepare.prepare_network
    network = prepared_network(model.network, resolved.device, resolved.precision, resolved.channels_last)

    def run(values, tiles, *, transform, sink, on_tiles, cancel):
        tiled_inference(
            network,
            values,
            plan=tiles,
            batch_size=resolved.batch_size,
            device=resolved.device,
            precision=resolved.precision,
            channels_last=resolved.channels_last,
            on_tiles=on_tiles,
            cancel=cancel,
            transform=transform,
            sink=sink,
        )

    return run


def _idf_runner(model, resolved):
    from ..model.idf import denoise_plane

    network = model.network
    tile = idf_tile(resolved.options)

    def run(values, tiles, *, transform, sink, on_tiles, cancel):
        plane = np.ascontiguousarray(transform(values), dtype=np.float32)
        height, width = plane.shape[1:]
        result = denoise_plane(
            network,
            plane,
            tile_size=tile,
            device=resolved.device,
            precision=resolved.precision,
            on_tiles=on_tiles,
            cancel=cancel,
            cache_logits=height * width <= IDF_CACHE_PIXELS,
        )
        sink(0, height, result)

    return run
