"""Showing a chosen set of layers (alone, or side by side in a row) and putting everything back afterwards.

A :class:`ViewSession` lends one viewer's view to one owner at a time (the
comparison's Grid view, the Denoise widget's Side by side): the other layers
are hidden while it lasts and the camera is fitted to the layers shown.

- ``layout="alone"``: the layers are shown where they are (the comparison's
  single montage layer).
- ``layout="row"``: each layer after the first is moved (``translate`` of its
  last axis) to the right of the one before, with a small gap, in the same
  view: one camera, so panning or zooming one pans and zooms all. The first
  layer stays where it is. (The owner names them in its own widget: napari's
  canvas text would rasterise each new glyph on the GUI thread, 0.25 s here.)

Ending the session (or the user switching napari's grid on, which would mix
with it) restores visibility and positions. Why not napari's
grid mode: switching it on builds a vispy view box and camera per cell and
redraws every cell at each change (229-268 ms stalls for two 1024 px cells on a
small CPU, 0.5-1 s for a dozen). The changes are made one per turn of the event
loop, so the viewer keeps responding while they happen.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable, Generator, Sequence

import numpy as np
from qtpy.QtCore import QTimer

from ._layers import layer_array

logger = logging.getLogger(__name__)

#: Gap between side-by-side layers, as a fraction of the first one's width.
ROW_GAP = 0.03
LAYOUTS = ("alone", "row")

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def layer_width(layer) -> float:
    """Width in world units of a layer's last axis (its pixels times its scale)."""
    shape = np.shape(layer_array(layer))
    spatial = shape[:-1] if getattr(layer, "rgb", False) else shape
    return float(spatial[-1]) * abs(float(layer.scale[-1]))


def row_translates(layers: Sequence) -> list[tuple[float, ...]]:
    """``translate`` of each layer that puts it to the right of the one before (the first stays)."""
    first = layers[0]
    gap = ROW_GAP * layer_width(first)
    right = float(first.translate[-1]) - 0.5 * abs(float(first.scale[-1])) + layer_width(first)
    translates = [tuple(float(v) for v in first.translate)]
    for layer in layers[1:]:
        half = 0.5 * abs(float(layer.scale[-1]))
        left = right + gap + half  # pixel centres: the layer's first column starts at the gap's end
        translates.append((*tuple(float(v) for v in layer.translate[:-1]), left))
        right = left - half + layer_width(layer)
    return translates


class ViewSession:
    """The view of one viewer, lent to one owner at a time (use :meth:`for_viewer`)."""

    def __init__(self, viewer):
        self._viewer = weakref.ref(viewer)
        self.owner = None
        self._on_end: Callable | None = None
        self._saved: dict | None = None
        self._requested_owner = None  # the owner of the last show() asked for (its steps may be pending)
        self._changing = False
        self._jobs: deque[Generator] = deque()
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._step)
        grid_of(viewer).events.enabled.connect(self._on_grid_enabled)

    @classmethod
    def for_viewer(cls, viewer) -> ViewSession:
        viewer = getattr(viewer, "__wrapped__", viewer)  # napari hands plugins a proxy of the viewer
        session = _SESSIONS.get(viewer)
        if session is None:
            session = _SESSIONS[viewer] = cls(viewer)
        return session

    @property
    def busy(self) -> bool:
        """Changes are still being made (one per event-loop turn)."""
        return bool(self._jobs)

    def show(self, owner, layers: Sequence, *, layout: str = "alone", on_end: Callable | None = None) -> None:
        """Show only ``layers`` (``layout`` "alone" or "row"); ``on_end()`` is called when the session ends."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        self._requested_owner = owner
        self._queue(self._show_steps(owner, list(layers), layout, on_end))

    def end(self, owner=None) -> None:
        """Restore what :meth:`show` changed (only ``owner``'s session, if given)."""
        if owner is not None and owner is not self._requested_owner:
            return
        self._requested_owner = None
        self._queue(self._end_steps())

    def _queue(self, job) -> None:
        self._jobs.append(job)
        if not self._timer.isActive():
            self._timer.start()

    def _step(self) -> None:
        if not self._jobs:
            return
        self._changing = True
        try:
            next(self._jobs[0])
        except StopIteration:
            self._jobs.popleft()
        except Exception:  # a layer or widget went away meanwhile: drop this job, keep the viewer usable
            logger.debug("view step failed", exc_info=True)
            self._jobs.popleft()
        finally:
            self._changing = False
        if self._jobs:
            self._timer.start()

    # ----------------------------------------------------------------- the steps
    def _show_steps(self, owner, layers, layout, on_end):
        viewer = self._viewer()
        if viewer is None:
            return
        if self._saved is not None and self.owner is not owner:
            yield from self._end_steps()
        shown = [layer for layer in layers if layer in viewer.layers]
        if not shown:
            return
        if self._saved is None:
            self._saved = {
                "visible": {id(layer): (layer, layer.visible) for layer in viewer.layers},
                "translate": {},
            }
        else:  # the same owner, a new layout: it starts from the original positions
            yield from self._restore_positions(viewer, self._saved)
        self.owner, self._on_end = owner, on_end
        grid = grid_of(viewer)
        if grid.enabled:  # napari's grid would put each layer in a view box of its own
            grid.enabled = False
            yield
        for layer in list(viewer.layers):
            if layer.visible and not any(layer is keep for keep in shown):
                layer.visible = False
                yield
        if layout == "row" and len(shown) > 1:
            for layer, target in zip(shown, row_translates(shown), strict=True):
                if tuple(float(v) for v in layer.translate) != target:
                    self._saved["translate"][id(layer)] = (layer, tuple(layer.translate))
                    layer.translate = target
                if not layer.visible:
                    layer.visible = True
                yield
        else:
            for layer in shown:
                if not layer.visible:
                    layer.visible = True
                    yield
        fit_view(viewer, shown)

    @staticmethod
    def _restore_positions(viewer, saved):
        """Put moved layers back where they were."""
        for layer, translate in saved["translate"].values():
            if layer in viewer.layers:
                layer.translate = translate
                yield
        saved["translate"] = {}

    def _end_steps(self):
        viewer = self._viewer()
        saved, self._saved = self._saved, None
        on_end, self._on_end, self.owner = self._on_end, None, None
        if saved is None or viewer is None:
            return
        for layer, visible in saved["visible"].values():  # hide first: each redraw gets smaller
            if layer in viewer.layers and layer.visible and not visible:
                layer.visible = False
                yield
        yield from self._restore_positions(viewer, saved)
        for layer, visible in saved["visible"].values():
            if layer in viewer.layers and visible and not layer.visible:
                layer.visible = True
                yield
        if on_end is not None:
            on_end()

    def _on_grid_enabled(self, event=None) -> None:
        viewer = self._viewer()
        if self._changing or self._saved is None or viewer is None:
            return
        if grid_of(viewer).enabled:  # the user switched napari's grid on: it replaces this view
            self.end()


def fit_view(viewer, layers) -> None:
    """Fit the camera to ``layers`` (napari >= 0.6 takes ``layers=``; older ones fit every layer)."""
    try:
        viewer.reset_view(layers=layers)
    except TypeError:
        viewer.reset_view()
