"""Whether the data fit the intensity convention the model was trained on; warnings when they clearly do not.

:func:`scale_warnings` is called by :func:`~.pipeline.plan_denoise`; what it returns
becomes notes of the plan starting with :data:`WARNING`, which every face shows
(the command line prints them and keeps them in the report, the widget shows them
before and after a run, ``denoise`` logs them as warnings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Prefix of the plan notes that are warnings.
WARNING = "warning: "
#: Values below this are taken as a sign of CT in HU (air is about -1000 HU, fat about -100 HU).
HU_EVIDENCE = -500.0
_DECLARE = "declare the unit (units='HU', --units HU, or Units: HU in the Denoise widget)"


def _named(model_name: str | None) -> str:
    return f"model {model_name!r}" if model_name else "the model"


def scale_warnings(
    *,
    model_name: str | None,
    model_scale,
    units: str | None,
    mode,
    dtype: np.dtype,
    rgb: bool,
    samples: Sequence[np.ndarray] | None,
    ranges: Sequence[tuple[float, float]] = (),
) -> list[str]:
    """Warnings (each starting with :data:`WARNING`) when data and model clearly do not fit.

    Parameters
    ----------
    model_name : str or None
        For the messages.
    model_scale : InputScale or None
        The model's convention (``unit``, ``low``, ``high``); None: unknown.
    units : str or None
        The unit the data were declared in (``"HU"``), or None.
    mode : str or tuple
        The intensity rule asked for (``"auto"``, ``"percentile"``, ``"dtype"``, pairs).
    dtype : numpy.dtype
        The image's dtype.
    rgb : bool
        Whether the image's channels are RGB colour.
    samples : sequence of ndarray or None
        The sampled values the ranges were estimated from (None for fixed ranges).
    ranges : sequence of (low, high)
        The ranges the plan uses, for the messages.
    """
    dtype = np.dtype(dtype)
    notes: list[str] = []
    model = _named(model_name)
    used = ", ".join(f"[{low:g}, {high:g}]" for low, high in ranges)
    minimum = maximum = None
    if samples:
        minimum = float(min(np.min(s) for s in samples))
        maximum = float(max(np.max(s) for s in samples))
    if model_scale is not None and model_scale.unit == "HU":
        window = f"[{model_scale.low:g}, {model_scale.high:g}]"
        if rgb:
            notes.append(
                f"{model} was trained on CT in HU (window {window}) but this is an RGB image, such as a"
                " photograph: the result is not a CT denoising; use a photo model such as gaussian15"
            )
        elif dtype == np.uint8:
            notes.append(
                f"{model} was trained on CT in HU (window {window}) but these are 8-bit values, which cannot"
                " hold HU (a screenshot or an exported picture?): denoise the original CT values instead"
            )
        elif minimum is not None and minimum >= 0.0:
            notes.append(
                f"{model} was trained on CT in HU (window {window}, air is about -1000 HU) but these data have"
                f" no negative values (min {minimum:g}, max {maximum:g}): they are probably stored values before"
                " the rescale slope/intercept, or not CT. Convert them to HU (value * slope + intercept) and"
                f" {_DECLARE}, or give the range yourself (intensity_range=(low, high))"
            )
        elif units != "HU" and mode == "auto" and minimum is not None and minimum <= HU_EVIDENCE:
            notes.append(
                f"{model} was trained on CT in HU (window {window}); these data look like HU (min {minimum:g})"
                f" but their unit was not declared, so 'auto' used the percentile rule {used} instead of the"
                f" model's window: {_DECLARE} to use {window}"
            )
    elif model_scale is not None and units == "HU":
        notes.append(
            f"{model} was trained on {model_scale.description} but these data are CT in HU: 'auto' mapped them"
            f" with {used}, a scale the network never saw; a CT model such as ldct fits them"
        )
    return [WARNING + note for note in notes]


def hu_evidence(samples: Sequence[np.ndarray]) -> bool:
    """Whether sampled values include values below :data:`HU_EVIDENCE` (air in a CT scan)."""
    return bool(samples) and float(min(np.min(s) for s in samples)) <= HU_EVIDENCE
