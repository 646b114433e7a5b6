"""Between napari image layers and the core: axes, preview planes, result and residual layers.

Plain functions on layer objects; no Qt and no torch.
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from .. import __version__
from ..inference.axes import AxesLayout, guess_axes, parse_axes

#: napari axis labels (lower-cased) -> the core's axis letters.
_LABEL_LETTERS = {
    "t": "T",
    "time": "T",
    "z": "Z",
    "depth": "Z",
    "slice": "Z",
    "c": "C",
    "ch": "C",
    "channel": "C",
    "channels": "C",
    "y": "Y",
    "row": "Y",
    "rows": "Y",
    "x": "X",
    "col": "X",
    "cols": "X",
    "column": "X",
    "s": "S",
    "rgb": "S",
    "rgba": "S",
    "colour": "S",
    "color": "S",
}


def layer_array(layer) -> Any:
    """The full-resolution data of an image layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_axes(layer) -> str:
    """Guess the core's axis string for an image layer from its rgb flag, axis labels and shape.

    Labels such as ``("z", "y", "x")`` or ``("t", "c", "y", "x")`` are used when
    every one of them names an axis; napari's default labels (``"-3"``, ...) are
    not names, so the shape decides (see :func:`napari_clipdenoise.inference.axes.guess_axes`).
    """
    shape = tuple(int(s) for s in layer_array(layer).shape)
    labels = tuple(str(label).strip().lower() for label in getattr(layer, "axis_labels", ()) or ())
    rgb = bool(getattr(layer, "rgb", False))
    # an RGB layer's labels cover only the spatial dims; the colour axis is the last array axis
    spatial = shape[:-1] if rgb else shape
    if len(labels) == len(spatial) and all(label in _LABEL_LETTERS for label in labels):
        letters = "".join(_LABEL_LETTERS[label] for label in labels) + ("S" if rgb else "")
        if len(set(letters)) == len(letters):
            try:
                parse_axes(letters, shape)
                return letters
            except ValueError:
                pass
    return guess_axes(shape, rgb=rgb)


def plane_axes(axes: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Array axes that are neither Y, X nor the channel axis (the axes a stack is sliced along)."""
    return parse_axes(axes, tuple(shape)).planes


def current_plane_index(layer, viewer, layout: AxesLayout) -> dict[int, int]:
    """The data index, along each plane axis, of the plane the viewer currently shows."""
    shape = tuple(int(s) for s in layer_array(layer).shape)
    layer_dims = layer.ndim  # an RGB layer's colour axis is not a viewer dimension
    point = np.asarray(viewer.dims.point, dtype=float)[-layer_dims:]
    data_position = np.asarray(layer.world_to_data(point), dtype=float)
    return {axis: int(np.clip(np.round(data_position[axis]), 0, shape[axis] - 1)) for axis in layout.planes}


def preview_region(layer, viewer, axes: str) -> tuple[tuple, dict[int, int]]:
    """Index (a tuple of slices) selecting the current plane, keeping every axis (size 1 along plane axes)."""
    shape = tuple(int(s) for s in layer_array(layer).shape)
    layout = parse_axes(axes, shape)
    index = current_plane_index(layer, viewer, layout)
    key = tuple(slice(index[a], index[a] + 1) if a in index else slice(None) for a in range(len(shape)))
    return key, index


#: Metadata key of the comparison widget's output layers.
COMPARE_KEY = "clipdenoise_compare"
#: Smallest preview region edge (pixels): smaller regions say "zoom out" instead.
MIN_PREVIEW_EDGE = 16


def is_compare_layer(layer) -> bool:
    """Whether ``layer`` is an output of the comparison widget."""
    return COMPARE_KEY in (getattr(layer, "metadata", None) or {})


def visible_region(layer, viewer, axes: str) -> tuple[tuple, dict[int, int]]:
    """Index selecting the part of the current plane that is on screen, and its offset per axis.

    Like :func:`preview_region` (plane axes are fixed to the plane shown), and the
    Y and X axes are cut to the canvas's view. Raises ValueError, saying what to
    do, in 3D view, when Y/X are not the axes on screen, or when the layer is off screen.
    """
    if viewer.dims.ndisplay != 2:
        raise ValueError(
            "Preview works on the plane on screen, and the 3D view shows none: switch to 2D view"
            " (the square button at the bottom left), or use Denoise for the whole stack"
        )
    shape = tuple(int(s) for s in layer_array(layer).shape)
    layout = parse_axes(axes, shape)
    key, index = preview_region(layer, viewer, axes)
    layer_dims = layer.ndim
    world_ndim = viewer.dims.ndim
    displayed_world = list(viewer.dims.displayed)
    displayed_layer = sorted(d - (world_ndim - layer_dims) for d in displayed_world)
    if sorted((layout.y, layout.x)) != displayed_layer:
        raise ValueError(
            f"Preview needs the Y and X axes of '{layer.name}' on screen; the view shows other axes."
            " Reset the axis order (the transpose buttons) or use Denoise"
        )
    height, width = (float(v) for v in viewer.canvas.viewbox_size(viewer.layers))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    centre = np.asarray(camera.center, dtype=float)[-2:]
    half = np.array([height, width]) / (2.0 * float(camera.zoom))
    base = np.asarray(viewer.dims.point, dtype=float).copy()
    corners = []
    for dy in (-1, 1):
        for dx in (-1, 1):
            point = base.copy()
            point[displayed_world[-2]] = centre[0] + dy * half[0]
            point[displayed_world[-1]] = centre[1] + dx * half[1]
            corners.append(np.asarray(layer.world_to_data(point[-layer_dims:]), dtype=float))
    corners = np.asarray(corners)
    key = list(key)
    offset = dict(index)
    for axis in (layout.y, layout.x):
        low = int(np.clip(np.floor(corners[:, axis].min() + 0.5), 0, shape[axis]))
        high = int(np.clip(np.ceil(corners[:, axis].max() + 0.5), 0, shape[axis]))
        if high - low <= 0:
            raise ValueError(f"'{layer.name}' is not on screen: press Home (reset view) or pan to it")
        if high - low < MIN_PREVIEW_EDGE:
            raise ValueError(
                f"the visible part of '{layer.name}' is only {high - low} pixels across: zoom out to preview it"
            )
        key[axis] = slice(low, high)
        if low:
            offset[axis] = low
    return tuple(key), offset


def geometry_kwargs(layer, *, offset: dict[int, int] | None = None) -> dict:
    """Scale, translate, units, axis labels of ``layer``; ``offset`` shifts translate by whole pixels."""
    translate = np.asarray(layer.translate, dtype=float).copy()
    scale = np.asarray(layer.scale, dtype=float)
    for axis, pixels in (offset or {}).items():
        translate[axis] += pixels * scale[axis]
    kwargs = {"scale": tuple(scale), "translate": tuple(translate), "axis_labels": tuple(layer.axis_labels)}
    units = getattr(layer, "units", None)
    if units is not None:
        kwargs["units"] = tuple(str(u) for u in units)
    return kwargs


def display_kwargs(layer) -> dict:
    """What the result should borrow from the input's look: contrast limits, colormap, blending, rgb."""
    kwargs = {
        "rgb": bool(layer.rgb),
        "contrast_limits": tuple(float(v) for v in layer.contrast_limits),
        "blending": layer.blending,
        "gamma": float(layer.gamma),
    }
    if not layer.rgb:
        kwargs["colormap"] = layer.colormap.name
    return kwargs


def provenance(model_info: dict, settings: dict, layer_name: str, seconds: float | None = None) -> dict:
    """The record attached to a result layer's metadata under ``"clipdenoise"``."""
    record = {
        "input_layer": layer_name,
        "model": dict(model_info),
        "settings": dict(settings),
        "napari_clipdenoise_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if seconds is not None:
        record["seconds"] = round(float(seconds), 3)
    return record


def residual(noisy, denoised):
    """``noisy - denoised`` as float32 (what the denoiser removed); lazy (dask) when ``denoised`` is lazy."""
    if isinstance(denoised, np.ndarray):
        return np.asarray(noisy, dtype=np.float32) - denoised.astype(np.float32, copy=False)
    import dask.array as da

    return da.asarray(noisy).astype(np.float32) - da.asarray(denoised).astype(np.float32)


def residual_limits(values) -> tuple[float, float]:
    """Symmetric contrast limits around zero: +-3 standard deviations (zero shows as mid-grey).

    For a lazy array only its middle plane along the first axis is read.
    """
    if not isinstance(values, np.ndarray):
        values = np.asarray(values[values.shape[0] // 2] if values.ndim > 2 else values)
    spread = float(np.std(values)) * 3.0 if values.size else 0.0
    spread = spread if np.isfinite(spread) and spread > 0 else 1.0
    return (-spread, spread)


def add_or_update_image(viewer, name: str, data, **kwargs):
    """Put ``data`` in the image layer called ``name``: update it in place if present, else add it.

    In-place updates keep the layer's position in the layer list and any display
    settings the user changed, except those given in ``kwargs`` that describe
    geometry (scale, translate) or ``metadata``, which are refreshed.
    """
    from napari.layers import Image

    existing = viewer.layers[name] if name in viewer.layers else None
    same_kind = isinstance(existing, Image) and existing.rgb == kwargs.get("rgb", existing.rgb)
    if same_kind and existing.ndim == _layer_ndim(data, kwargs):
        existing.data = data
        for key in ("scale", "translate", "metadata"):
            if key in kwargs:
                setattr(existing, key, kwargs[key])
        if "contrast_limits" in kwargs:
            existing.contrast_limits = kwargs["contrast_limits"]
        existing.refresh()
        return existing
    if existing is not None:  # same name but a different kind of layer: replace it
        viewer.layers.remove(existing)
    return viewer.add_image(data, name=name, **kwargs)


def _layer_ndim(data, kwargs) -> int:
    return len(data.shape) - (1 if kwargs.get("rgb") else 0)
