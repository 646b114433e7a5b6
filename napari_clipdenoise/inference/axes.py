"""Axis strings: parsing, validation and guessing from an array's shape.

Letters: ``Y`` and ``X`` (required, once each), ``C`` channels or ``S`` colour
samples (at most one of them), and any other upper-case letters (``T``, ``Z``,
``Q``...) for axes processed plane by plane.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNEL_LETTERS = "CS"


@dataclass(frozen=True)
class AxesLayout:
    """Where each kind of axis sits in an array."""

    axes: str
    y: int
    x: int
    channel: int | None
    planes: tuple[int, ...]

    @property
    def channel_last(self) -> bool:
        return self.channel is not None and self.channel == len(self.axes) - 1


def guess_axes(shape: tuple[int, ...], *, rgb: bool | None = None) -> str:
    """Guess an axis string for ``shape``, the way napari reads arrays.

    2D is ``YX``; a trailing axis of 3 or 4 is colour (``YXC``) unless ``rgb`` is
    False; 3D otherwise ``ZYX``; 4D ``CZYX`` when the first axis is short (<= 8),
    else ``TZYX``; 5D ``TCZYX``.
    """
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"an image needs at least 2 dimensions (Y, X), got shape {tuple(shape)}")
    colour = (shape[-1] in (3, 4) if rgb is None else rgb) and ndim >= 3
    if colour:
        if shape[-1] not in (3, 4):
            raise ValueError(f"rgb=True needs a last axis of 3 or 4 colour samples, got shape {tuple(shape)}")
        prefix = {3: "", 4: "Z", 5: "TZ"}.get(ndim)
        if prefix is None:
            raise ValueError(f"cannot guess axes for a {ndim}D colour array of shape {tuple(shape)}; pass axes=")
        return prefix + "YXC"
    if ndim == 2:
        return "YX"
    if ndim == 3:
        return "ZYX"
    if ndim == 4:
        return "CZYX" if shape[0] <= 8 else "TZYX"
    if ndim == 5:
        return "TCZYX"
    raise ValueError(f"cannot guess axes for a {ndim}D array of shape {tuple(shape)}; pass axes= explicitly")


def parse_axes(axes: str, shape: tuple[int, ...]) -> AxesLayout:
    """Validate ``axes`` against ``shape`` and locate Y, X, the channel axis and plane axes."""
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'YX', 'ZYX' or 'YXC', got {type(axes).__name__}")
    letters = axes.upper()
    if len(letters) != len(shape):
        raise ValueError(
            f"axes {axes!r} has {len(letters)} letters but the image has {len(shape)} dimensions {tuple(shape)}"
        )
    if not letters.isalpha():
        raise ValueError(f"axes {axes!r} must contain letters only, e.g. 'TZYX'")
    repeated = sorted({c for c in letters if letters.count(c) > 1})
    if repeated:
        raise ValueError(f"axes {axes!r} repeats {''.join(repeated)}; each letter may appear once")
    if "Y" not in letters or "X" not in letters:
        raise ValueError(f"axes {axes!r} must contain both 'Y' and 'X'")
    channels = [i for i, c in enumerate(letters) if c in CHANNEL_LETTERS]
    if len(channels) > 1:
        raise ValueError(f"axes {axes!r} has both 'C' and 'S'; use one channel axis")
    y, x = letters.index("Y"), letters.index("X")
    channel = channels[0] if channels else None
    planes = tuple(i for i in range(len(letters)) if i not in (y, x, channel))
    return AxesLayout(letters, y, x, channel, planes)
