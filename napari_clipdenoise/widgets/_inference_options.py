"""The collapsible "tile size, overlap, device, precision" section both widgets share."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QSpinBox, QToolButton, QWidget

from ..inference.options import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, DEVICES, PRECISIONS, InferenceOptions


class InferenceOptionsPanel:
    """A toggle button and the panel it shows: the core's tiling and device options.

    ``toggle`` and ``panel`` are added to the owner's layout; ``form`` takes extra rows.
    """

    def __init__(self, parent: QWidget, title: str, whole_text: str):
        self.toggle = QToolButton(parent)
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setStyleSheet("QToolButton { border: none; }")
        self.panel = QWidget(parent)
        self.tile_size = QSpinBox(self.panel)
        self.tile_size.setRange(0, 8192)
        self.tile_size.setSingleStep(16)
        self.tile_size.setValue(DEFAULT_TILE_SIZE)
        self.tile_size.setSpecialValueText(whole_text)
        self.tile_size.setSuffix(" px")
        self.tile_size.setToolTip(
            f"Largest tile edge in pixels (multiple of 16; tiles shrink to fit the image evenly); 0 = {whole_text} in one pass"
        )
        self.overlap = QSpinBox(self.panel)
        self.overlap.setRange(0, 4096)
        self.overlap.setSingleStep(16)
        self.overlap.setValue(DEFAULT_OVERLAP)
        self.overlap.setSuffix(" px")
        self.overlap.setToolTip("Pixels shared by neighbouring tiles, blended to hide seams")
        self.device = QComboBox(self.panel)
        self.device.addItems(DEVICES)
        self.device.setToolTip("auto: CUDA GPU, else Apple MPS, else CPU")
        self.precision = QComboBox(self.panel)
        self.precision.addItems(PRECISIONS)
        self.precision.setToolTip("auto: bf16 where the hardware runs it natively, else fp32")
        self.form = QFormLayout(self.panel)
        self.form.setContentsMargins(12, 0, 0, 0)
        self.form.addRow("Tile size", self.tile_size)
        self.form.addRow("Overlap", self.overlap)
        self.form.addRow("Device", self.device)
        self.form.addRow("Precision", self.precision)
        self.tta = QCheckBox("Test-time augmentation", self.panel)
        self.tta.setToolTip(
            "Average the outputs over the 8 flips/rotations of each plane (in float32): 8 times the time,"
            " usually a little less noise (BENCHMARKS.md)"
        )
        self.form.addRow(self.tta)
        self.panel.setVisible(False)
        self.toggle.toggled.connect(self._on_toggled)

    def _on_toggled(self, shown: bool) -> None:
        self.panel.setVisible(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def options(self, **fields) -> InferenceOptions:
        """The core's options from the panel (plus ``fields``); OptionError names a bad value."""
        return InferenceOptions(
            tile_size=self.tile_size.value() or None,
            overlap=self.overlap.value(),
            device=self.device.currentText(),
            precision=self.precision.currentText(),
            tta=self.tta.isChecked(),
            **fields,
        )
