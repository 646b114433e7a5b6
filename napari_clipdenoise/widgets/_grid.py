"""Showing a chosen set of layers (in napari's grid, or alone), and putting everything back afterwards.

napari's grid (one linked camera, one cell per visible layer in layer-list
order) is shared by the whole viewer. :class:`GridSession` makes it show exactly
the given layers in the given order and shape: other layers are hidden while it
lasts, each cell is named by its layer's name overlay, and the view is reset so
every cell shows its whole image. Ending the session (or the user switching the
grid off with napari's own button) restores visibility, name overlays and the
grid settings. One session per viewer: starting one ends the previous owner's.
``show(..., grid=False)`` shows the layers alone in the normal view instead (the
comparison's single montage layer): the others hidden, the view fitted to them.

Every change of a layer's visibility or of the grid makes napari rebuild its
scene and draw, which in grid mode costs a draw of every cell. So the changes
are made one per turn of the event loop (the viewer stays responsive), in an
order that keeps each draw small: the grid is switched on last.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable, Generator, Sequence

from qtpy.QtCore import QTimer

logger = logging.getLogger(__name__)

#: Font size (points) of the cell names in grid view.
CELL_FONT_SIZE = 8
#: Pixels between grid cells.
CELL_SPACING = 4

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


class GridSession:
    """The grid of one viewer, lent to one owner at a time (use :meth:`for_viewer`)."""

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
    def for_viewer(cls, viewer) -> GridSession:
        viewer = getattr(viewer, "__wrapped__", viewer)  # napari hands plugins a proxy of the viewer
        session = _SESSIONS.get(viewer)
        if session is None:
            session = _SESSIONS[viewer] = cls(viewer)
        return session

    @property
    def active(self) -> bool:
        """A session is on (or being set up)."""
        return self._saved is not None or self._requested_owner is not None

    @property
    def busy(self) -> bool:
        """Changes are still being made (one per event-loop turn)."""
        return bool(self._jobs)

    def show(
        self, owner, layers: Sequence, shape: tuple[int, int] = (1, 1), on_end: Callable | None = None, *, grid=True
    ) -> None:
        """Show ``layers`` (row by row) in a ``shape`` grid, or alone (``grid=False``); ``on_end()`` when it ends."""
        self._requested_owner = owner
        if grid:
            self._queue(self._show_steps(owner, list(layers), tuple(int(v) for v in shape), on_end))
        else:
            self._queue(self._solo_steps(owner, list(layers), on_end))

    def end(self, owner=None) -> None:
        """Switch the grid off and restore what :meth:`show` changed (only ``owner``'s session, if given)."""
        if owner is not None and owner is not self._requested_owner:
            return
        self._requested_owner = None
        self._queue(self._end_steps())

    def flush(self) -> None:
        """Make every pending change now."""
        self._timer.stop()
        while self._jobs:
            self._step(reschedule=False)

    def _queue(self, job) -> None:
        self._jobs.append(job)
        if not self._timer.isActive():
            self._timer.start()

    def _step(self, reschedule: bool = True) -> None:
        if not self._jobs:
            return
        self._changing = True
        try:
            next(self._jobs[0])
        except StopIteration:
            self._jobs.popleft()
        except Exception:  # a layer or widget went away meanwhile: drop this job, keep the viewer usable
            logger.debug("grid step failed", exc_info=True)
            self._jobs.popleft()
        finally:
            self._changing = False
        if reschedule and self._jobs:
            self._timer.start()

    # ----------------------------------------------------------------- the steps
    def _start(self, viewer, owner, on_end):
        """End another owner's session; remember what this one will change."""
        if self._saved is not None and self.owner is not owner:
            yield from self._end_steps()
        grid = grid_of(viewer)
        if self._saved is None:
            self._saved = {
                "visible": {id(layer): (layer, layer.visible) for layer in viewer.layers},
                "names": {},
                "grid": (tuple(grid.shape), grid.stride, grid.spacing),
            }
        self.owner, self._on_end = owner, on_end

    def _solo_steps(self, owner, layers, on_end):
        viewer = self._viewer()
        if viewer is None:
            return
        yield from self._start(viewer, owner, on_end)
        shown = [layer for layer in layers if layer in viewer.layers]
        grid = grid_of(viewer)
        if grid.enabled:
            grid.enabled = False
            yield
        for layer in list(viewer.layers):
            if layer.visible and not any(layer is keep for keep in shown):
                layer.visible = False
                yield
        for layer in shown:
            if not layer.visible:
                layer.visible = True
                yield
        if shown:
            fit_view(viewer, shown)

    def _show_steps(self, owner, layers, shape, on_end):
        viewer = self._viewer()
        if viewer is None:
            return
        yield from self._start(viewer, owner, on_end)
        grid = grid_of(viewer)
        shown = [layer for layer in layers if layer in viewer.layers]
        if not shown:
            return
        if grid.enabled:  # re-laying out an enabled grid draws every cell at each change
            grid.enabled = False
            yield
        # napari rebuilds its scene at each change, at a cost that grows with the visible layers and their
        # name overlays: hide everything but the first cell, lay the grid out, switch it on, show one more
        # cell per turn, and name the cells last.
        first = shown[0]
        for layer in list(viewer.layers):
            if layer is not first and layer.visible:
                layer.visible = False
                yield
        for layer in shown:  # names come last: with name overlays on, each change below costs more
            overlay = layer.name_overlay
            self._saved["names"].setdefault(id(layer), (layer, overlay.visible, overlay.font_size))
            if overlay.visible:
                overlay.visible = False
                yield
        indices = [viewer.layers.index(layer) for layer in shown]
        stride = 1
        if all(a > b for a, b in zip(indices, indices[1:], strict=False)) and len(indices) > 1:
            stride = -1
        elif not all(a < b for a, b in zip(indices, indices[1:], strict=False)):
            start = min(indices)  # make the layer list follow the grid's order (one move per turn)
            for offset, layer in enumerate(shown):
                here = viewer.layers.index(layer)
                if here != start + offset:
                    viewer.layers.move(here, start + offset)
                    yield
        for name, value in (("stride", stride), ("shape", shape), ("spacing", CELL_SPACING)):
            current = tuple(getattr(grid, name)) if name == "shape" else getattr(grid, name)
            if current != value:
                setattr(grid, name, value)
                yield
        if not first.visible:
            first.visible = True
            yield
        grid.enabled = True
        viewer.reset_view()  # the shape is fixed, so one cell already gives the final zoom
        yield
        for layer in shown[1:]:
            if layer in viewer.layers and not layer.visible:
                layer.visible = True
                yield
        for layer in shown:
            if layer in viewer.layers:
                overlay = layer.name_overlay
                if overlay.font_size != CELL_FONT_SIZE:
                    overlay.font_size = CELL_FONT_SIZE
                overlay.visible = True
                yield

    def _end_steps(self):
        viewer = self._viewer()
        saved, self._saved = self._saved, None
        on_end, self._on_end, self.owner = self._on_end, None, None
        if saved is None or viewer is None:
            return
        grid = grid_of(viewer)
        # hide first (each grid frame gets smaller), then switch the grid off, then show the user's layers again
        for layer, visible in saved["visible"].values():
            if layer in viewer.layers and layer.visible and not visible:
                layer.visible = False
                yield
        for layer in viewer.layers:  # the session's cells that were added while it lasted
            if id(layer) not in saved["visible"] and id(layer) in saved["names"] and layer.visible:
                layer.visible = False
                yield
        if grid.enabled:
            grid.enabled = False  # the session's grid ends with it
            yield
        for layer, visible, size in saved["names"].values():
            layer.name_overlay.font_size = size
            layer.name_overlay.visible = visible
        shape, stride, spacing = saved["grid"]
        for name, value in (("stride", stride), ("shape", shape), ("spacing", spacing)):
            current = tuple(getattr(grid, name)) if name == "shape" else getattr(grid, name)
            if current != value:
                setattr(grid, name, value)
        yield
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
        if not grid_of(viewer).enabled:  # switched off with napari's own grid button
            self.end()


def fit_view(viewer, layers) -> None:
    """Fit the camera to ``layers`` (napari >= 0.6 takes ``layers=``; older ones fit every layer)."""
    try:
        viewer.reset_view(layers=layers)
    except TypeError:
        viewer.reset_view()
