"""A combo box listing a viewer's image layers, kept in sync as layers come, go and get renamed."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox


class ImageLayerCombo(QComboBox):
    """Lists the names of the viewer's ``Image`` layers; ``layer()`` returns the selected one.

    Parameters
    ----------
    viewer : napari.Viewer
    exclude_suffixes : tuple of str
        Layers whose names end with one of these (e.g. the widget's own outputs)
        are listed after the others, so a fresh run picks an input by default.
    hide : callable, optional
        ``hide(layer)`` True for layers not to list at all (e.g. another widget's outputs).
    prefer : callable, optional
        ``prefer(layers)`` returns the layer to select when nothing is selected yet
        (or the selected layer went away), or None for the default: the active
        layer, else the first listed.
    """

    layer_changed = Signal(object)

    def __init__(
        self,
        viewer,
        parent=None,
        *,
        exclude_suffixes: tuple[str, ...] = (),
        hide: Callable | None = None,
        prefer: Callable | None = None,
    ):
        super().__init__(parent)
        self.viewer = viewer
        self._suffixes = exclude_suffixes
        self._hide = hide
        self._prefer = prefer
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.currentIndexChanged.connect(lambda _: self.layer_changed.emit(self.layer()))
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            self._watch_name(layer)
        self.refresh()

    def _watch_name(self, event_or_layer) -> None:
        layer = getattr(event_or_layer, "value", event_or_layer)
        layer.events.name.connect(self.refresh)

    def image_layers(self) -> list:
        from napari.layers import Image

        layers = [layer for layer in self.viewer.layers if isinstance(layer, Image)]
        if self._hide is not None:
            layers = [layer for layer in layers if not self._hide(layer)]
        first = [layer for layer in layers if not layer.name.endswith(self._suffixes or ("\0",))]
        return first + [layer for layer in layers if layer not in first]

    def refresh(self, *_) -> None:
        # napari holds only weak references to these callbacks; a deleted widget simply stops listening
        try:
            current = self.currentText()
        except RuntimeError:  # the Qt object is gone
            return
        layers = self.image_layers()
        names = [layer.name for layer in layers]
        if names == [self.itemText(i) for i in range(self.count())]:
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentIndex(names.index(current))
        else:
            self._select_default(layers)
        self.blockSignals(False)
        if self.currentText() != current:
            self.layer_changed.emit(self.layer())

    def _select_default(self, layers) -> None:
        names = [layer.name for layer in layers]
        preferred = self._prefer(layers) if self._prefer is not None else None
        if preferred is not None and preferred.name in names:
            self.setCurrentIndex(names.index(preferred.name))
            return
        active = self.viewer.layers.selection.active
        if active is not None and active.name in names and not active.name.endswith(self._suffixes or ("\0",)):
            self.setCurrentIndex(names.index(active.name))

    def choose_default(self) -> None:
        """Select the default layer again (e.g. after the widget's mode changed what it prefers)."""
        self._select_default(self.image_layers())

    def layer(self):
        name = self.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def set_layer(self, layer_or_name) -> None:
        name = getattr(layer_or_name, "name", layer_or_name)
        index = self.findText(name)
        if index < 0:
            raise ValueError(f"no image layer named {name!r} in the viewer")
        self.setCurrentIndex(index)
