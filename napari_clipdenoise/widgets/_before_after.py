"""Before/after: an input and its result side by side (one view, one camera) or flipped in place."""

from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from ._view_session import ViewSession
from ._worker import if_alive


class BeforeAfterRow(QWidget):
    """``[Side by side] [Show input]``: before/after views of the pair given to :meth:`set_pair`.

    *Side by side* shows only the two, the result moved to the right of the
    input in the same view (one camera: panning and zooming one pans and zooms
    both), their names under the buttons; *Show input* hides the result so the input under
    it shows, in the same place, until it is pressed again.
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
        self.names = QLabel("", self)
        self.names.setStyleSheet("color: gray;")
        self.names.setWordWrap(True)
        self.names.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.names.setVisible(False)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.side_by_side, 1)
        buttons.addWidget(self.flip, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.names)
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
        session = ViewSession.for_viewer(self.viewer)
        pair = self._alive_pair()
        if checked and pair is not None:
            if self.flip.isChecked():
                self.flip.setChecked(False)
            session.show(self, pair, layout="row", on_end=if_alive(self, self._on_grid_ended))
            self.names.setText(f"left: {pair[0].name}   ·   right: {pair[1].name}")
            self.names.setVisible(True)
        elif not checked:
            session.end(self)
            self.names.setVisible(False)

    def _on_grid_ended(self) -> None:
        self.names.setVisible(False)
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
