"""Typed functions for napari: plain ones on arrays (scripts, workflows) and two small forms.

Plain functions take and return ``napari.types.ImageData`` (an array):

>>> from napari_clipdenoise.napari_functions import denoise_image, add_noise_image
>>> noisy = add_noise_image(viewer.layers["clean"].data, "gaussian", 25.0, seed=0)
>>> viewer.add_image(denoise_image(noisy, model="gaussian15"))

The Plugins menu's *Add synthetic noise* and *Classical denoise* are the forms
:func:`add_noise_widget` and :func:`classical_denoise_widget` (magicgui
factories, see napari.yaml). They take an image layer and add a **new** layer
per run (named after the input and the settings), in the input's units, dtype,
scale and units, with the settings recorded in ``metadata["clipdenoise"]``;
they work in a thread, and a problem (no layer, a constant image...) is shown
as one clear message, not a traceback. torch is imported only when
``denoise_image`` runs.
"""

import datetime
from typing import Literal

import napari
import numpy as np
from magicgui import magic_factory
from napari.layers import Image
from napari.qt.threading import FunctionWorker
from napari.types import ImageData, LayerDataTuple

from ._version import __version__
from .inference.options import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, DEVICES, PRECISIONS
from .noise import LEVEL_UNITS, NOISE_MODELS, TYPICAL_LEVELS
from .unit_scale import UnitScale

NoiseKind = Literal["gaussian", "poisson", "poisson_peak", "spatial_gaussian", "speckle", "salt_pepper"]
ClassicalMethod = Literal["nl_means", "tv", "wavelet", "bm3d"]
Device = Literal[DEVICES]
Precision = Literal[PRECISIONS]
#: Step of the level field per noise model (fractions need finer steps than sigmas).
LEVEL_STEPS = {"speckle": 0.01, "salt_pepper": 0.01, "poisson": 0.1}
#: The unit shown after the level's number, per noise model.
LEVEL_SUFFIXES = {
    "gaussian": " σ (0-255)",
    "poisson": " × (scale)",
    "poisson_peak": " photons at peak",
    "spatial_gaussian": " σ (0-255, before blur)",
    "speckle": " relative σ",
    "salt_pepper": " of pixels",
}


def denoise_image(
    image: ImageData,
    model: str = "gaussian15",
    axes: str = "",
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    device: Device = "auto",
    precision: Precision = "auto",
) -> ImageData:
    """Denoise an image with a denoising model; same shape and dtype out.

    Parameters
    ----------
    image : ndarray
        2D, 3D, RGB(A) or multichannel image (see :func:`napari_clipdenoise.denoise`).
    model : str
        Registry/cache name (``gaussian15``, ``srgb``, ``ldct``...) or a checkpoint path.
    axes : str
        Axis letters such as ``"ZYX"`` or ``"YXC"``; empty guesses them from the shape.
    tile_size, overlap : int
        Tile edge and overlap in pixels (tile 0 = each plane in one pass).
    device, precision : str
        ``"auto"`` picks the fastest available.
    """
    from .inference.pipeline import denoise

    return denoise(
        np.asarray(image) if not hasattr(image, "dtype") else image,
        model,
        axes=axes.strip() or None,
        tile_size=tile_size or None,
        overlap=overlap,
        device=device,
        precision=precision,
    )


def add_noise_image(
    image: ImageData,
    kind: NoiseKind = "gaussian",
    level: float = 25.0,
    seed: int = 0,
    rgb: bool = False,
) -> ImageData:
    """Add synthetic noise at ``level`` (the unit ``kind`` documents; e.g. sigma on 0-255), seeded.

    The image is mapped to [0, 1] first (uint8 by /255, floats in [0, 1] as they
    are, anything else by its own min/max) and the result is float32 on that same
    [0, 1] scale. See :data:`napari_clipdenoise.noise.NOISE_MODELS`. (The *Add
    synthetic noise* form returns the input's units and dtype instead.)
    """
    from .noise import add_noise

    image = np.asarray(image)
    image01 = UnitScale.for_image(image).to_unit(image)
    return add_noise(image01, kind, level, rng=int(seed), channel_axis=-1 if rgb else None).astype(np.float32)


def classical_denoise_image(
    image: ImageData,
    method: ClassicalMethod = "nl_means",
    sigma: float = 0.0,
    rgb: bool = False,
) -> ImageData:
    """Denoise with a classical method (scikit-image NL-means, TV, wavelet; BM3D if installed).

    ``sigma`` is the noise standard deviation on the 0-255 scale (0 = estimate it).
    The image is mapped to [0, 1] as in :func:`add_noise_image`; the result is float32 on [0, 1].
    """
    from .baselines import classical_denoise

    image = np.asarray(image)
    image01 = UnitScale.for_image(image).to_unit(image)
    return classical_denoise(image01, method, sigma=sigma / 255.0 if sigma else None, channel_axis=-1 if rgb else None)


# --------------------------------------------------------------------------- the forms
def _unique_name(viewer, name):
    if viewer is None or name not in viewer.layers:
        return name
    number = 2
    while f"{name} ({number})" in viewer.layers:
        number += 1
    return f"{name} ({number})"


def _record(operation, layer, scale, **settings):
    return {
        "operation": operation,
        "input_layer": layer.name,
        **settings,
        "unit_scale": {"low": scale.low, "high": scale.high},
        "napari_clipdenoise_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _like(layer, data, name, record):
    """A layer data tuple on the input layer's geometry and look, with ``record`` as provenance."""
    kwargs = {
        "name": name,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "axis_labels": tuple(layer.axis_labels),
        "rgb": bool(layer.rgb),
        "contrast_limits": tuple(float(v) for v in layer.contrast_limits),
        "metadata": {**{k: v for k, v in dict(layer.metadata).items() if k != "clipdenoise"}, "clipdenoise": record},
    }
    units = getattr(layer, "units", None)
    if units is not None:
        kwargs["units"] = tuple(str(u) for u in units)
    if not layer.rgb:
        kwargs["colormap"] = layer.colormap.name
    return (data, kwargs, "image")


def _in_worker(compute):
    """Run ``compute()`` (which returns a layer data tuple) in a napari worker; errors become one message.

    The worker starts on the next event-loop turn, after napari has connected
    its result handler; an error is shown with ``show_error`` and adds nothing.
    """
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QTimer

    failure: dict = {}

    def target():
        try:
            return compute()
        except Exception as exc:  # shown below as a message, not a traceback
            failure["message"] = str(exc)
            return None

    def report(_result):
        if "message" in failure:
            from napari.utils.notifications import show_error

            show_error(failure["message"])

    worker = create_worker(target, _start_thread=False)
    worker.returned.connect(report)
    QTimer.singleShot(0, worker.start)
    return worker


def _no_layer_worker(message):
    from napari.utils.notifications import show_error

    show_error(message)
    return _in_worker(lambda: None)


def _set_suffix(field, suffix, special=""):
    """Show the unit after a number field's value (Qt spin boxes; other backends skip it)."""
    native = getattr(field, "native", None)
    if hasattr(native, "setSuffix"):
        native.setSuffix(suffix)
        if special:
            native.setSpecialValueText(special)


def _init_classical_form(widget):
    _set_suffix(widget.sigma, " (0-255)", special="estimate")


def _init_noise_form(widget):
    def on_kind(kind):
        unit = LEVEL_UNITS.get(kind, "")
        levels = TYPICAL_LEVELS.get(kind, (1.0,))
        widget.level.tooltip = (
            f"{NOISE_MODELS[kind]}. Unit: {unit}. Typical levels: {', '.join(f'{v:g}' for v in levels)}"
        )
        widget.level.step = LEVEL_STEPS.get(kind, 1.0)
        widget.level.value = float(levels[len(levels) // 2])
        _set_suffix(widget.level, LEVEL_SUFFIXES.get(kind, ""))

    widget.kind.changed.connect(on_kind)
    on_kind(widget.kind.value)


@magic_factory(
    widget_init=_init_noise_form,
    call_button="Add noise",
    image={"label": "image", "tooltip": "The clean image layer to add noise to"},
    kind={"label": "noise", "tooltip": "The noise model (see each level's tooltip for its unit)"},
    level={"min": 0.0, "max": 1e6, "step": 1.0},
    seed={"min": 0, "max": 2**31 - 1, "tooltip": "The same seed and settings give the same pixels"},
)
def add_noise_widget(
    image: Image,
    kind: NoiseKind = "gaussian",
    level: float = 25.0,
    seed: int = 0,
    viewer: napari.Viewer = None,
) -> FunctionWorker[LayerDataTuple]:
    """Add seeded synthetic noise to an image layer, as a new layer in the input's units and dtype.

    The values are mapped to [0, 1] (uint8 by /255, floats within [0, 1] as
    they are, other images by their own min and max), noise of ``level`` (the
    unit the noise model documents) is added there, and the result is mapped
    back. Integer images are rounded and clipped to their dtype's range.
    """
    if image is None:
        return _no_layer_worker("Add synthetic noise: there is no image layer; open or add one first.")
    name = _unique_name(viewer, f"{image.name} + {kind} {level:g}")
    data, rgb = image.data, bool(image.rgb)

    def compute():
        from .noise import add_noise

        array = np.asarray(data[0] if image.multiscale else data)
        scale = UnitScale.for_image(array)
        noisy01 = add_noise(scale.to_unit(array), kind, float(level), rng=int(seed), channel_axis=-1 if rgb else None)
        out = scale.from_unit(noisy01, array.dtype if array.dtype.kind in "uif" else np.float32)
        unit = LEVEL_UNITS.get(kind, "")
        record = _record("add_noise", image, scale, kind=kind, level=float(level), level_unit=unit, seed=int(seed))
        return _like(image, out, name, record)

    return _in_worker(compute)


def _classical_choices(_widget=None):
    from .baselines import available_methods

    return available_methods()


@magic_factory(
    widget_init=_init_classical_form,
    call_button="Denoise",
    image={"label": "image", "tooltip": "The noisy image layer"},
    method={"choices": _classical_choices, "tooltip": "Classical denoisers (BM3D appears when it is installed)"},
    sigma={
        "label": "noise sigma",
        "min": 0.0,
        "max": 255.0,
        "step": 1.0,
        "tooltip": "Noise standard deviation, on the 0-255 scale of the image mapped to [0, 1];"
        " 0 (estimate) measures it from the image",
    },
)
def classical_denoise_widget(
    image: Image,
    method: str = "nl_means",
    sigma: float = 0.0,
    viewer: napari.Viewer = None,
) -> FunctionWorker[LayerDataTuple]:
    """Denoise an image layer with a classical method, as a new layer in the input's units and dtype."""
    if image is None:
        return _no_layer_worker("Classical denoise: there is no image layer; open or add one first.")
    name = _unique_name(viewer, f"{image.name} · {method}")
    data, rgb = image.data, bool(image.rgb)

    def compute():
        from .baselines import classical_denoise

        array = np.asarray(data[0] if image.multiscale else data)
        scale = UnitScale.for_image(array)
        out01 = classical_denoise(
            scale.to_unit(array), method, sigma=sigma / 255.0 if sigma else None, channel_axis=-1 if rgb else None
        )
        out = scale.from_unit(out01, array.dtype if array.dtype.kind in "uif" else np.float32)
        record = _record("classical_denoise", image, scale, method=method, sigma_0_255=float(sigma) or "estimated")
        return _like(image, out, name, record)

    return _in_worker(compute)
