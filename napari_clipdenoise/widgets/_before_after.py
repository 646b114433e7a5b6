"""Before/after: an input and its result side by side (linked, in napari's grid) or flipped in place."""

from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QPushButton, QWidget

from ._grid import GridSession
from ._worker import if_alive


class BeforeAfterRow(QWidget):
    """``[Side by side] [Show input]``: before/after views of the pair given to :meth:`set_pair`.

    *Side by side* shows only the two, in a 1 x 2 grid with one camera (panning
    and zooming one pans and zooms both); *Show input* hides the result so the
    input under it shows, in the same place, until it is pressed again.
    """

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self._pair: tuple | None = None
        self.side_by_side = QPushButton("Side by side", self)
        self.side_by_side.setCheckable(True)
        self.side_by_side.setToolTip(
            "Before/after: the input and its result next to each other, with one linked camera"
        )
        self.flip = QPushButton("Show input", self)
        self.flip.setCheckable(True)
        self.flip.setToolTip("Before/after: hide the result to see the input in its place; press again for the result")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.side_by_side, 1)
        layout.addWidget(self.flip, 1)
        self.side_by_side.toggled.connect(self._on_side_by_side)
        self.flip.toggled.connect(self._on_flip)
        self.set_pair(None, None)

    def set_pair(self, before, after) -> None:
        """The input and result layers to compare (None, None: nothing to compare)."""
        pair = (before, after) if before is not None and after is not None else None
        if pair != self._pair:
            self._reset()
        self._pair = pair
        for button in (self.side_by_side, self.flip):
            button.setEnabled(pair is not None)
        self.setVisible(pair is not None)  # shown once the picked layer has a result

    def _reset(self) -> None:
        if self.side_by_side.isChecked():
            self.side_by_side.setChecked(False)
        if self.flip.isChecked():
            self.flip.setChecked(False)

    def _alive_pair(self):
        if self._pair is None or any(layer not in self.viewer.layers for layer in self._pair):
            return None
        return self._pair

    def _on_side_by_side(self, checked: bool) -> None:
        session = GridSession.for_viewer(self.viewer)
        pair = self._alive_pair()
        if checked and pair is not None:
            if self.flip.isChecked():
                self.flip.setChecked(False)
            session.show(self, pair, (1, 2), on_end=if_alive(self, self._on_grid_ended))
        elif not checked:
            session.end(self)

    def _on_grid_ended(self) -> None:
        self.side_by_side.blockSignals(True)
        self.side_by_side.setChecked(False)
        self.side_by_side.blockSignals(False)

    def _on_flip(self, checked: bool) -> None:
        pair = self._alive_pair()
        if pair is None:
            return
        before, after = pair
        if checked:
            if self.side_by_side.isChecked():
                self.side_by_side.setChecked(False)
            before.visible = True
            after.visible = False
            self.flip.setText("Show result")
        else:
            after.visible = True
            self.flip.setText("Show input")
