"""The Denoise widget's "Volumes and CT" section: units, planes, the model's scale, the range a run uses, CT windows.

Kept apart from ``denoise.py`` (which hooks it in with a few lines): it reads the
owner's layer, model and axes choices, and offers

* **Units**: what the layer's values are in (from the layer: our DICOM/NIfTI
  reader marks CT in HU; or HU; or not declared), giving the core's ``units``;
* **Planes**: ``xy`` or ``ortho`` (XY, XZ and YZ averaged; for volumes with a Z axis);
* the model's expected input scale and the intensity range a run will use, with
  the core's warnings when data and model do not fit (worked out by
  ``plan_denoise`` on in-memory layers, without loading the model or importing torch);
* CT window presets that set the result layer's contrast limits (results stay in
  the input's values, HU for CT: the output has the input's dtype).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from ..inference.options import PLANES, InferenceOptions
from . import _layers

#: CT display windows: name -> (width, level) in HU.
CT_WINDOWS = {"soft tissue": (400.0, 40.0), "lung": (1500.0, -600.0), "bone": (2000.0, 500.0)}
#: Layer metadata key under which the napari reader records the source (and its ``units``).
SOURCE_KEY = "clipdenoise_source"
FROM_LAYER = "from the layer"
UNITS_CHOICES = ((FROM_LAYER, "layer"), ("HU", "HU"), ("not declared", None))
WARNING_STYLE = "color: #ffb347;"
RESULT_SUFFIXES = ("_denoised", "_denoised_preview")


def window_limits(name: str) -> tuple[float, float]:
    """Contrast limits (level - width / 2, level + width / 2) of a CT window."""
    width, level = CT_WINDOWS[name]
    return (level - width / 2.0, level + width / 2.0)


def layer_units(layer) -> str | None:
    """The unit a layer's values are in, as recorded by the reader (``"HU"``), else None."""
    if layer is None:
        return None
    record = (getattr(layer, "metadata", None) or {}).get(SOURCE_KEY) or {}
    units = record.get("units") if isinstance(record, dict) else None
    return units if units in ("HU",) else None


class CTControls(QWidget):
    """Units, planes, scale and range, and CT windows for the result; ``owner`` is the DenoiseWidget."""

    def __init__(self, owner):
        super().__init__(owner)
        self.owner = owner
        self.units = QComboBox(self)
        for label, value in UNITS_CHOICES:
            self.units.addItem(label, value)
        self.units.setToolTip(
            "The unit of the layer's values. With HU, a model trained on CT (ldct) is fed on its own scale"
            " (-1024..3072 HU); 'from the layer' uses what the file said (DICOM CT, CT NIfTI)."
        )
        self.planes = QComboBox(self)
        self.planes.addItems(PLANES)
        self.planes.setToolTip(
            "xy: plane by plane. ortho: the XY, XZ and YZ planes of each volume are denoised and averaged"
            " (about 3x the time, less slice-to-slice flicker; needs a Z axis)."
        )
        self.scale_label = QLabel(self)
        self.scale_label.setWordWrap(True)
        self.range_label = QLabel(self)
        self.range_label.setWordWrap(True)
        self.warning_label = QLabel(self)
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet(WARNING_STYLE)
        self.warning_label.setVisible(False)
        self.window_buttons: dict[str, QPushButton] = {}
        windows = QHBoxLayout()
        for name, (width, level) in CT_WINDOWS.items():
            button = QPushButton(name.split()[0].capitalize() if name != "soft tissue" else "Soft tissue", self)
            button.setToolTip(f"Show the result with the {name} window W{width:g} / L{level:g} HU")
            button.clicked.connect(lambda _=False, n=name: self.apply_window(n))
            windows.addWidget(button)
            self.window_buttons[name] = button
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Units", self.units)
        form.addRow("Planes", self.planes)
        form.addRow(self.scale_label)
        form.addRow(self.range_label)
        form.addRow(self.warning_label)
        self.window_title = QLabel("CT window of the result", self)
        self.window_row = QWidget(self)
        self.window_row.setLayout(windows)
        windows.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.window_title)  # the buttons on a row of their own: fits a laptop dock
        form.addRow(self.window_row)
        owner.layer_combo.layer_changed.connect(lambda _layer: self.refresh())
        owner.model_combo.source_changed.connect(lambda _source: self.refresh())
        owner.axes_edit.editingFinished.connect(self.refresh)
        self.units.currentIndexChanged.connect(lambda _i: self.refresh())
        self.planes.currentIndexChanged.connect(lambda _i: self.refresh())
        self.refresh()

    # ----------------------------------------------------------------- what the run gets
    def declared_units(self) -> str | None:
        choice = self.units.currentData()
        return layer_units(self.owner.layer_combo.layer()) if choice == "layer" else choice

    def option_fields(self) -> dict:
        """The core options this section decides (``units``, ``planes``)."""
        return {"units": self.declared_units(), "planes": self.planes.currentText()}

    def preview_settings(self, settings):
        """The settings for Preview slice: one plane has no XZ or YZ planes, so ``planes`` is ``xy``."""
        import dataclasses

        return dataclasses.replace(settings, options=settings.options.replace(planes="xy"))

    # ----------------------------------------------------------------- what it shows
    def refresh(self) -> None:
        """Show the model's expected scale and the range a run would use on the current layer."""
        from ..model.facts import model_facts

        layer = self.owner.layer_combo.layer()
        source = self.owner.model_combo.source()
        facts = None
        try:
            facts = model_facts(source) if source is not None else None
        except Exception:  # noqa: BLE001 - an unreadable file: the run will say why
            facts = None
        scale = facts.input_scale if facts is not None else None
        self.scale_label.setText(
            f"Model expects: {scale.describe()}" if scale is not None else "Model expects: unknown input scale"
        )
        units = self.declared_units()
        self.units.setItemText(0, f"{FROM_LAYER} ({layer_units(layer) or 'none'})")
        # CT windows only where HU are in play (the data are declared HU, or the model was trained on HU)
        ct = units == "HU" or (scale is not None and scale.unit == "HU")
        self.window_title.setVisible(ct)
        self.window_row.setVisible(ct)
        if layer is None or facts is None:
            self._show_range("Range: chosen when the run starts", [])
            return
        image = _layers.layer_array(layer)
        if not isinstance(image, np.ndarray):
            self._show_range("Range: measured when the run starts (lazy layer)", [])
            return
        try:
            from ..inference.pipeline import plan_denoise

            options = InferenceOptions(units=units, planes=self.planes.currentText())
            plan = plan_denoise(image, facts, axes=self.owner.axes_edit.text().strip().upper() or None, options=options)
        except Exception as exc:  # noqa: BLE001 - bad axes, ortho without Z...: shown, the run reports it too
            self._show_range(f"Range: {exc}", [])
            return
        self._show_range("Range: " + _ranges_text(plan.intensity_ranges()), plan.warnings)

    def show_result(self, ranges: list[dict] | None, warnings: list[str]) -> None:
        """After a run: the ranges it used and its warnings."""
        if ranges:
            self._show_range("Used: " + _ranges_text(ranges), warnings)

    def _show_range(self, text: str, warnings: list[str]) -> None:
        self.range_label.setText(text)
        self.warning_label.setText("\n".join(w.removeprefix("warning: ") for w in warnings))
        self.warning_label.setVisible(bool(warnings))

    # ----------------------------------------------------------------- CT windows
    def result_layers(self) -> list:
        layer = self.owner.layer_combo.layer()
        if layer is None:
            return []
        layers = self.owner.viewer.layers
        return [layers[layer.name + suffix] for suffix in RESULT_SUFFIXES if layer.name + suffix in layers]

    def apply_window(self, name: str) -> list:
        """Set the contrast limits of the current layer's results (``<layer>_denoised``...) to a CT window."""
        limits = window_limits(name)
        targets = self.result_layers()
        for target in targets:
            target.contrast_limits_range = (
                min(limits[0], target.contrast_limits_range[0]),
                max(limits[1], target.contrast_limits_range[1]),
            )
            target.contrast_limits = limits
        if not targets:
            self.owner._set_status(f"No result yet: denoise first, then pick the {name} window.")
        return targets


def _ranges_text(ranges: list[dict]) -> str:
    return "; ".join(f"[{r['low']:g}, {r['high']:g}] ({r.get('rule') or 'given'})" for r in ranges)
