"""Showing a chosen set of layers in napari's grid, labelled, and putting everything back afterwards.

napari's grid (one linked camera, one cell per visible layer in layer-list
order) is shared by the whole viewer. :class:`GridSession` makes it show exactly
the given layers in the given order and shape: other layers are hidden while it
lasts, each cell is named by its layer's name overlay, and the view is reset so
every cell shows its whole image. Ending the session (or the user switching the
grid off with napari's own button) restores visibility, name overlays and the
grid settings. One session per viewer: starting one ends the previous owner's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

#: Font size (points) of the cell names in grid view.
CELL_FONT_SIZE = 9
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
        self._changing = False
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
        return self._saved is not None

    def show(self, owner, layers: Sequence, shape: tuple[int, int], on_end: Callable | None = None) -> None:
        """Show ``layers`` (row by row) in a ``shape`` grid; ``on_end()`` is called when the grid ends."""
        viewer = self._viewer()
        if viewer is None:
            return
        if self.active and self.owner is not owner:
            self.end()
        if not self.active:
            grid = grid_of(viewer)
            self._saved = {
                "visible": {id(layer): (layer, layer.visible) for layer in viewer.layers},
                "names": {},
                "grid": (grid.enabled, tuple(grid.shape), grid.stride, grid.spacing),
            }
        self.owner, self._on_end = owner, on_end
        shown = [layer for layer in layers if layer in viewer.layers]
        stride = self._order(viewer, shown)
        self._changing = True
        try:
            grid = grid_of(viewer)
            grid.enabled = False  # one re-layout at the end instead of one per change
            wanted = {id(layer) for layer in shown}
            for layer in viewer.layers:
                layer.visible = id(layer) in wanted
            for layer in shown:
                overlay = layer.name_overlay
                self._saved["names"].setdefault(id(layer), (layer, overlay.visible, overlay.font_size))
                overlay.font_size = CELL_FONT_SIZE
                overlay.visible = True
            grid.stride = stride
            grid.shape = tuple(int(v) for v in shape)
            grid.spacing = CELL_SPACING
            grid.enabled = True
        finally:
            self._changing = False
        viewer.reset_view()

    @staticmethod
    def _order(viewer, layers: Sequence) -> int:
        """Make the layer list order follow ``layers`` (moving them if needed); returns the grid stride."""
        indices = [viewer.layers.index(layer) for layer in layers]
        if all(a < b for a, b in zip(indices, indices[1:], strict=False)):
            return 1
        if all(a > b for a, b in zip(indices, indices[1:], strict=False)):
            return -1
        start = min(indices)
        for offset, layer in enumerate(layers):
            viewer.layers.move(viewer.layers.index(layer), start + offset)
        return 1

    def end(self, owner=None) -> None:
        """Switch the grid off and restore what :meth:`show` changed (only ``owner``'s session, if given)."""
        if not self.active or (owner is not None and owner is not self.owner):
            return
        viewer = self._viewer()
        saved, self._saved = self._saved, None
        on_end, self._on_end, self.owner = self._on_end, None, None
        if viewer is not None:
            self._changing = True
            try:
                grid = grid_of(viewer)
                _, shape, stride, spacing = saved["grid"]
                grid.enabled = False  # the session's grid ends with it
                grid.shape, grid.stride, grid.spacing = shape, stride, spacing
                for layer, visible, size in saved["names"].values():
                    layer.name_overlay.visible = visible
                    layer.name_overlay.font_size = size
                for layer, visible in saved["visible"].values():
                    if layer in viewer.layers:
                        layer.visible = visible
            finally:
                self._changing = False
        if on_end is not None:
            on_end()

    def _on_grid_enabled(self, event=None) -> None:
        viewer = self._viewer()
        if self._changing or not self.active or viewer is None:
            return
        if not grid_of(viewer).enabled:  # switched off with napari's own grid button
            self.end()
