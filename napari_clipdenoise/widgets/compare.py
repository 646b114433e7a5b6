"""The noise-level comparison dock widget: methods x noise levels, with a labelled grid, a table and a plot.

With a clean reference, the widget adds seeded noise at each level, runs every
checked method on each noisy image and scores it against the reference (PSNR,
SSIM from :mod:`napari_clipdenoise.metrics`). Without one (real noisy data), it
runs the methods on the layer as it is and shows results, residuals and the
input's estimated noise level.

The results arrive as one montage layer, ``comparison``: one row per level and
one column per clean / noisy / method (or the transpose, when that gives larger
cells on the canvas), each cell named in a strip above it (without a reference:
the input and each method in one row, and ``comparison · residuals``). One layer
instead of one per cell keeps the viewer responsive: napari builds each layer on
the GUI thread, and every layer makes each later garbage collection longer. The
next comparison replaces the montage. **Add as layer** (or a double-click on a
cell) adds one result as a layer of its own, with the input's geometry and the
run's scores in ``metadata["clipdenoise_compare_source"]``; those are the
user's to keep. Grid view shows the montage alone, fitted to the canvas.
"""

from __future__ import annotations

import threading
import warnings
import weakref

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..baselines import CLASSICAL_METHODS, available_methods
from ..comparison import (
    CLEAN,
    METRICS,
    NOISY,
    NOISY_REFERENCE_SIGMA,
    CompareResults,
    CompareSettings,
    compare_job,
    grid_shape,
    is_model,
    layer_name,
    method_label,
    method_labels,
    model_method,
    model_source,
    records,
    reference_sigma,
    score_grid,
)
from ..inference.axes import parse_axes
from ..jobs import JobOutcome
from ..model.sources import parse_model_source
from ..model.summary import available_models, describe_model
from ..montage import compose_montage
from ..noise import LEVEL_UNITS, NOISE_MODELS, TYPICAL_LEVELS
from ..unit_scale import UnitScale
from . import _layers
from ._cell_names import draw_cell_names
from ._inference_options import InferenceOptionsPanel
from ._job import JobWidgetMixin
from ._layer_combo import ImageLayerCombo
from ._layer_queue import LayerQueue, LayerSpec
from ._model_combo import CHECKPOINT_FILTER
from ._plot import LinePlot
from ._scroll import ScrollingDockMixin, scrolling_content
from ._table import ResultsTable
from ._view_session import ViewSession, grid_of
from ._worker import if_alive, job_worker

__all__ = ["CompareWidget", "grid_of", "parse_levels"]

MODE_REFERENCE = "Add noise to a clean reference"
MODE_REAL = "Real noisy data (no reference)"
WARNING_STYLE = "color: #ffb347;"
COMPARE_KEY = _layers.COMPARE_KEY
#: Metadata key of a result added as a layer of its own (the user's: never replaced or removed).
SOURCE_KEY = "clipdenoise_compare_source"
#: Names of the montage layers.
MONTAGE_NAME = "comparison"
RESIDUAL_MONTAGE_NAME = "comparison · residuals"

#: Default levels and the unit of the level, per noise model.
LEVELS = {kind: (", ".join(f"{level:g}" for level in TYPICAL_LEVELS[kind]), LEVEL_UNITS[kind]) for kind in NOISE_MODELS}
DEFAULT_CLASSICAL = ("nl_means", "wavelet")
#: Words in a layer's name that mark it as a clean reference (lower case, whole words).
CLEAN_WORDS = ("clean", "reference", "ref", "gt", "ground", "truth", "full_dose", "fulldose", "original")
NOISY_WORDS = ("noisy", "noise", "low_dose", "lowdose")
#: Rows of the method list shown without scrolling.
METHOD_ROWS = 7
#: Edge (pixels) of the central crop used to judge a layer picked as the clean reference.
QUICK_CHECK_SIZE = 256


def parse_levels(text: str) -> tuple[float, ...]:
    """``"15, 25 50"`` -> ``(15.0, 25.0, 50.0)``; raises ValueError naming the bad entry."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError("levels: give at least one number, e.g. '15, 25, 50'")
    levels = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"levels: {part.strip()!r} is not a number; write e.g. '15, 25, 50'") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"levels: {part.strip()!r} must be a finite number >= 0")
        levels.append(value)
    if len(set(levels)) != len(levels):
        raise ValueError("levels: each level may appear once")
    return tuple(levels)


def _words(name: str) -> set[str]:
    import re

    lowered = name.lower()
    return set(re.split(r"[^a-z0-9]+", lowered)) | {w for w in CLEAN_WORDS + NOISY_WORDS if w in lowered and "_" in w}


def says_noisy(layer) -> str:
    """Why ``layer``'s name or metadata says it is noisy ("" when nothing does)."""
    metadata = getattr(layer, "metadata", None) or {}
    noise = metadata.get("noise")
    if isinstance(noise, str) and noise and not noise.lower().startswith("none"):
        return f"its metadata says noise: {noise}"
    record = metadata.get("clipdenoise")
    if isinstance(record, dict) and record.get("operation") == "add_noise":
        return "it was made by Add synthetic noise"
    if _words(layer.name) & set(NOISY_WORDS):
        return "its name says so"
    return ""


def looks_clean(layer) -> bool:
    """Whether ``layer``'s name or metadata marks it as a clean reference."""
    if says_noisy(layer):
        return False
    metadata = getattr(layer, "metadata", None) or {}
    noise = metadata.get("noise")
    if isinstance(noise, str) and noise.lower().startswith("none"):
        return True
    return bool(_words(layer.name) & set(CLEAN_WORDS))


class CompareWidget(ScrollingDockMixin, JobWidgetMixin, QWidget):
    """Dock widget: compare denoisers across noise levels (or on real noisy data).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_job_state()
        self._models: dict = {}
        self.results: CompareResults | None = None
        self._watched: weakref.WeakSet = weakref.WeakSet()  # montage layers whose double-click we handle
        self._names: dict[str, str] = {}  # layer name -> the name it got (when a user layer had it)
        self._geometry: dict = {}  # the input's 2D geometry, for results added as layers
        self._source_name = ""
        self.layer_queue = LayerQueue(napari_viewer, self)
        self._build()
        self._set_idle_bar()
        self._on_mode_changed()
        self._on_noise_changed(self.noise.currentText())

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        content = scrolling_content(self)
        self.mode = QComboBox(content)
        self.mode.addItems([MODE_REFERENCE, MODE_REAL])
        self.layer_combo = ImageLayerCombo(
            self.viewer,
            content,
            exclude_suffixes=("_denoised", "_residual", "_denoised_preview", "_residual_preview"),
            hide=_layers.is_compare_layer,
            prefer=self._preferred_input,
        )
        self.reference_note = QLabel(content)
        self.reference_note.setWordWrap(True)
        self.reference_note.setStyleSheet(WARNING_STYLE)
        self.reference_note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.reference_note.setVisible(False)
        self.noise = QComboBox(content)
        for kind, description in NOISE_MODELS.items():
            self.noise.addItem(kind)
            self.noise.setItemData(self.noise.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.levels = QLineEdit(content)
        self.levels.setToolTip("Comma-separated noise levels")
        self.level_unit = QLabel(content)
        self.level_unit.setStyleSheet("color: gray;")
        self.seed = QSpinBox(content)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The same seed and settings give the same noisy images and numbers")
        self.methods = QListWidget(content)
        self._fill_methods()
        self.add_checkpoint_button = QPushButton("Add checkpoint…", content)
        self.add_checkpoint_button.setToolTip("Add a denoiser checkpoint file (.safetensors or reference .pth)")
        self.refresh_methods_button = QToolButton(content)
        self.refresh_methods_button.setText("↻")
        self.refresh_methods_button.setToolTip("Re-read the model cache (after installing a model)")

        options = InferenceOptionsPanel(content, "Model tiling and device", "whole image")
        self.advanced_toggle, self.advanced = options.toggle, options.panel
        self.tile_size, self.overlap = options.tile_size, options.overlap
        self.device, self.precision = options.device, options.precision
        self._options = options

        self.run_button = QPushButton("Compare", content)
        self.cancel_button = QPushButton("Cancel", content)
        self.cancel_button.setEnabled(False)
        self.grid_button = QPushButton("Grid view", content)
        self.grid_button.setCheckable(True)
        self.grid_button.setToolTip(
            "Show the comparison montage alone: one row per level, one column per clean / noisy / method,"
            " each cell named (other layers are hidden until you switch it off)"
        )
        self.residuals_button = QPushButton("Residuals", content)
        self.residuals_button.setCheckable(True)
        self.residuals_button.setToolTip("Grid view of the residuals (input − result) instead of the results")
        self.add_layer_button = QPushButton("Add as layer", content)
        self.add_layer_button.setToolTip(
            "Add the result picked in the table (a cell: that level; a method's name: all its levels) as a layer"
            " of its own, to keep, save or denoise further. A double-click on a cell of the montage does the same."
        )
        self.progress_bar = QProgressBar(content)
        self.status = QLabel("", content)
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("", content)
        self.summary.setWordWrap(True)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.metric = QComboBox(content)
        for key, (header, *_rest) in METRICS.items():
            self.metric.addItem(header, key)
        self.metric.setToolTip("The score the table shows (bold: the best method at each level)")
        self.table = ResultsTable(content, max_visible_rows=7)
        self.copy_button = QPushButton("Copy", content)
        self.copy_button.setToolTip("Copy every run with every score (tab-separated, pastes into spreadsheets)")
        self.export_button = QPushButton("CSV…", content)
        self.export_button.setToolTip("Export every run with every score, full precision, to a CSV file")
        self.plot = LinePlot(content, height=2.8)

        self._form = form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Mode", self.mode)
        form.addRow("Image", self.layer_combo)
        form.addRow(self.reference_note)
        form.addRow("Noise", self.noise)
        form.addRow("Levels", self.levels)
        form.addRow("", self.level_unit)
        form.addRow("Seed", self.seed)
        form.addRow("Methods", self.methods)
        method_buttons = QHBoxLayout()
        method_buttons.addWidget(self.add_checkpoint_button, 1)
        method_buttons.addWidget(self.refresh_methods_button)
        form.addRow("", method_buttons)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        view_buttons = QHBoxLayout()
        view_buttons.addWidget(self.grid_button)
        view_buttons.addWidget(self.residuals_button)
        view_buttons.addWidget(self.add_layer_button)
        table_bar = QHBoxLayout()
        table_bar.addWidget(QLabel("Show", content))
        table_bar.addWidget(self.metric, 1)
        table_bar.addWidget(self.copy_button)
        table_bar.addWidget(self.export_button)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addLayout(view_buttons)
        layout.addWidget(self.summary)
        layout.addLayout(table_bar)
        layout.addWidget(self.table)
        layout.addWidget(self.plot)
        layout.addStretch(1)
        self.setMinimumWidth(220)

        self.mode.currentIndexChanged.connect(lambda _: self._on_mode_changed())
        self.layer_combo.layer_changed.connect(lambda _layer: self._check_reference())
        self.noise.currentTextChanged.connect(self._on_noise_changed)
        self.add_checkpoint_button.clicked.connect(self._on_add_checkpoint)
        self.refresh_methods_button.clicked.connect(self.refresh_methods)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.grid_button.toggled.connect(self._on_grid_toggled)
        self.residuals_button.toggled.connect(lambda _checked: self._on_grid_toggled(self.grid_button.isChecked()))
        self.metric.currentIndexChanged.connect(lambda _: self._show_table())
        self.copy_button.clicked.connect(self.table.copy_to_clipboard)
        self.export_button.clicked.connect(self._on_export)
        self.add_layer_button.clicked.connect(lambda: self.add_selected_results())
        self.table.cellDoubleClicked.connect(lambda _row, _column: self.add_selected_results())
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._update_buttons()

    # ----------------------------------------------------------------- methods
    def refresh_methods(self) -> None:
        """Re-list the methods (newly installed models appear), keeping added checkpoints and ticks."""
        items = [self.methods.item(i) for i in range(self.methods.count())]
        ticked = {item.data(Qt.ItemDataRole.UserRole) for item in items if item.checkState() == Qt.CheckState.Checked}
        listed = {item.data(Qt.ItemDataRole.UserRole) for item in items}
        checkpoints = [m for m in listed if is_model(m) and parse_model_source(model_source(m)).is_file]
        self.methods.clear()
        self._fill_methods()
        for method in checkpoints:
            self.add_checkpoint(model_source(method))
        for i in range(self.methods.count()):
            item = self.methods.item(i)
            method = item.data(Qt.ItemDataRole.UserRole)
            if item.flags() & Qt.ItemFlag.ItemIsUserCheckable and method in listed:  # new entries keep their default
                item.setCheckState(Qt.CheckState.Checked if method in ticked else Qt.CheckState.Unchecked)

    def _fill_methods(self) -> None:
        """Every model the core knows (registry, bundled, installed), the classical methods, then missing models."""
        first_loadable = True
        missing = []
        summaries = [describe_model(name) for name in available_models()]
        for summary in [s for s in summaries if s.loadable] + [s for s in summaries if not s.loadable]:
            name = summary.name
            item = QListWidgetItem(name if summary.loadable else f"{name} (not installed)")
            item.setData(Qt.ItemDataRole.UserRole, model_method(name))
            family = f"Network: {summary.family_name}" if summary.family_name else ""
            tooltip = "\n".join(t for t in (summary.description, summary.warning, family) if t)
            if summary.loadable:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if first_loadable else Qt.CheckState.Unchecked)
                first_loadable = False
                item.setToolTip(tooltip)
            else:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled & ~Qt.ItemFlag.ItemIsUserCheckable)
                item.setToolTip(summary.hint)
                missing.append(item)
                continue
            self.methods.addItem(item)
        for method in available_methods():
            item = QListWidgetItem(method)
            item.setData(Qt.ItemDataRole.UserRole, method)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if method in DEFAULT_CLASSICAL else Qt.CheckState.Unchecked)
            item.setToolTip(CLASSICAL_METHODS[method])
            self.methods.addItem(item)
        for item in missing:
            self.methods.addItem(item)
        self._fit_methods()

    def _fit_methods(self) -> None:
        """As tall as the list (up to METHOD_ROWS rows), so the usable methods show without scrolling."""
        rows = max(3, min(self.methods.count(), METHOD_ROWS))
        row = self.methods.sizeHintForRow(0) if self.methods.count() else 16
        row = max(row, 14) + self.methods.spacing()
        self.methods.setFixedHeight(rows * row + 2 * self.methods.frameWidth() + row // 2 + 6)

    def method_names(self) -> list[str]:
        """Every method listed (checkable or not)."""
        return [self.methods.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.methods.count())]

    # ----------------------------------------------------------------- options
    @property
    def reference_mode(self) -> bool:
        return self.mode.currentText() == MODE_REFERENCE

    @property
    def is_busy(self) -> bool:
        """A comparison runs, or its layers are still being added or laid out in the grid."""
        return self.is_running or self.layer_queue.busy or ViewSession.for_viewer(self.viewer).busy

    def set_methods(self, methods) -> None:
        """Check exactly ``methods`` (classical names, ``model:<name>`` or checkpoint paths via ``add_checkpoint``)."""
        wanted = list(methods)
        items = [self.methods.item(i) for i in range(self.methods.count())]
        known = [
            item.data(Qt.ItemDataRole.UserRole) for item in items if item.flags() & Qt.ItemFlag.ItemIsUserCheckable
        ]
        missing = [m for m in wanted if m not in known]
        if missing:
            raise ValueError(f"unknown method(s) {missing} (a model must be installed); available: {known}")
        for i in range(self.methods.count()):
            item = self.methods.item(i)
            if item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                checked = item.data(Qt.ItemDataRole.UserRole) in wanted
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def selected_methods(self) -> tuple[str, ...]:
        return tuple(
            self.methods.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.methods.count())
            if self.methods.item(i).checkState() == Qt.CheckState.Checked
        )

    def add_checkpoint(self, path) -> str:
        """Add a checkpoint file as a (checked) model method; returns its method name."""
        import os

        method = model_method(path)
        for i in range(self.methods.count()):
            if self.methods.item(i).data(Qt.ItemDataRole.UserRole) == method:
                self.methods.item(i).setCheckState(Qt.CheckState.Checked)
                return method
        summary = describe_model(os.fspath(path))
        item = QListWidgetItem(method_label(method))
        item.setData(Qt.ItemDataRole.UserRole, method)
        item.setToolTip("\n".join(t for t in (os.fspath(path), summary.description, summary.warning) if t))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.methods.insertItem(0, item)
        self._fit_methods()
        return method

    def settings(self, rgb: bool) -> CompareSettings:
        """The current options; raises ValueError naming the problem."""
        methods = self.selected_methods()
        if not methods:
            raise ValueError("tick at least one method to compare")
        levels = parse_levels(self.levels.text()) if self.reference_mode else ()
        return CompareSettings(
            methods=methods,
            noise=self.noise.currentText(),
            levels=levels,
            seed=self.seed.value(),
            rgb=rgb,
            options=self._options.options(),
        )

    def _preferred_input(self, layers):
        """In reference mode: a layer whose name or metadata marks it clean, never a noisy-looking one."""
        if not hasattr(self, "mode") or not self.reference_mode:
            return None
        clean = [layer for layer in layers if looks_clean(layer)]
        if clean:
            return clean[0]
        active = self.viewer.layers.selection.active
        if active is not None and active in layers and says_noisy(active):
            quiet = [layer for layer in layers if not says_noisy(layer)]
            return quiet[0] if quiet else None
        return None

    def _on_mode_changed(self) -> None:
        reference = self.reference_mode
        for widget in (self.noise, self.levels, self.level_unit, self.seed):
            self._form.setRowVisible(widget, reference)
        self.layer_combo.setToolTip("The clean image" if reference else "The noisy image to denoise as it is")
        self._form.labelForField(self.layer_combo).setText("Clean image" if reference else "Noisy image")
        current = self.layer_combo.layer()
        if reference and (current is None or says_noisy(current)):  # keep a choice that is not noisy
            self.layer_combo.choose_default()
        self._check_reference()
        self._update_buttons()

    def _check_reference(self) -> None:
        """Reference mode: say so when the layer picked as the clean image looks noisy."""
        note = ""
        layer = self.layer_combo.layer()
        if self.reference_mode and layer is not None:
            reason = says_noisy(layer)
            sigma = None
            try:
                plane = self._quick_plane(layer)
                if min(plane.shape[:2]) >= 32:  # the wavelet estimate needs some pixels
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        sigma = reference_sigma(plane, rgb=bool(layer.rgb), max_size=QUICK_CHECK_SIZE)
            except Exception:  # noqa: BLE001 - the run itself reports a bad image
                sigma = None
            if sigma is not None and sigma > NOISY_REFERENCE_SIGMA:
                reason = f"estimated noise σ ≈ {sigma:.1f} on 0-255" + (f"; {reason}" if reason else "")
            if reason:
                note = (
                    f"⚠ '{layer.name}' looks noisy ({reason}): PSNR against it would measure agreement with"
                    " noise. Pick the clean image, or switch Mode to real noisy data."
                )
        self.reference_note.setText(note)
        self.reference_note.setVisible(bool(note))

    def _quick_plane(self, layer):
        """A central crop of the plane on screen, on [0, 1] (cheap enough on every selection change)."""
        data = _layers.layer_array(layer)
        axes = _layers.layer_axes(layer)
        region, _ = _layers.preview_region(layer, self.viewer, axes)
        shape = tuple(int(s) for s in data.shape)
        layout = parse_axes(axes, shape)
        region = list(region)
        for axis in (layout.y, layout.x):
            start = max(0, (shape[axis] - QUICK_CHECK_SIZE) // 2)
            region[axis] = slice(start, start + QUICK_CHECK_SIZE)
        plane = np.asarray(data[tuple(region)])
        plane = plane.reshape(plane.shape[-3:] if layer.rgb else plane.shape[-2:])
        if layer.rgb:
            plane = plane[..., :3]
        return UnitScale.for_image(plane).to_unit(plane)

    def _on_noise_changed(self, kind: str) -> None:
        levels, unit = LEVELS.get(kind, ("", ""))
        self.levels.setText(levels)
        self.level_unit.setText(f"level = {unit}")

    def _on_add_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a denoiser checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.add_checkpoint(path)

    # ----------------------------------------------------------------- montage
    def grid_layers(self) -> list:
        """The montage layer Grid view shows (the residuals' when Residuals is pressed)."""
        if self.results is None:
            return []
        residuals = self.residuals_button.isChecked() and not self.results.reference
        name = self._names.get(RESIDUAL_MONTAGE_NAME if residuals else MONTAGE_NAME)
        layers = self.viewer.layers
        if name is None or name not in layers or not _layers.is_compare_layer(layers[name]):
            return []
        return [layers[name]]

    def _on_grid_toggled(self, enabled: bool) -> None:
        session = ViewSession.for_viewer(self.viewer)
        if not enabled:
            session.end(self)
            return
        layers = self.grid_layers()
        if not layers:
            self._set_status("Run a comparison first: Grid view shows its montage.")
            self.grid_button.blockSignals(True)
            self.grid_button.setChecked(False)
            self.grid_button.blockSignals(False)
            return
        session.show(self, layers, layout="alone", on_end=if_alive(self, self._on_grid_ended))

    def _on_grid_ended(self) -> None:
        self.grid_button.blockSignals(True)
        self.grid_button.setChecked(False)
        self.grid_button.blockSignals(False)

    def _on_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the comparison table", "comparison.csv", "CSV (*.csv)")
        if path:
            self.table.export_csv(path)
            self._set_status(f"Table written to {path}")

    def _on_layer_removed(self, event) -> None:
        try:
            self.objectName()
        except RuntimeError:
            return
        if self.results is not None and not any(_layers.is_compare_layer(layer) for layer in self.viewer.layers):
            ViewSession.for_viewer(self.viewer).end(self)

    def _update_buttons(self) -> None:
        running = self.is_running
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (
            self.mode,
            self.layer_combo,
            self.noise,
            self.levels,
            self.seed,
            self.methods,
            self.add_checkpoint_button,
            self.refresh_methods_button,
            self.advanced,
        ):
            widget.setEnabled(not running)
        has_rows = bool(self.table.rows())
        self.copy_button.setEnabled(has_rows)
        self.export_button.setEnabled(has_rows)
        self.metric.setEnabled(self.results is not None and self.results.reference)
        self.grid_button.setEnabled(self.results is not None and not running)
        self.add_layer_button.setEnabled(self.results is not None and bool(self.selected_results()))
        self.residuals_button.setVisible(self.results is not None and not self.results.reference)

    # ----------------------------------------------------------------- running
    def _input_image(self, layer):
        """The layer's 2D plane (or colour image) on screen, on [0, 1]; and its geometry for the outputs."""
        data = _layers.layer_array(layer)
        axes = _layers.layer_axes(layer)
        if not layer.rgb and any(letter in "CS" for letter in axes):
            raise ValueError(
                f"the comparison works on a grey or RGB image, but '{layer.name}' has a channel axis (axes {axes});"
                " split it into one layer per channel first (right-click the layer > Split Stack)"
            )
        region, offset = _layers.preview_region(layer, self.viewer, axes)
        plane = np.asarray(data[region])
        rgb = bool(layer.rgb)
        plane = plane.reshape(plane.shape[-3:] if rgb else plane.shape[-2:])
        if rgb and plane.shape[-1] == 4:
            plane = plane[..., :3]  # alpha is not compared
        if not rgb and any(size == 1 for size in plane.shape):
            raise ValueError(f"the image plane has shape {plane.shape}; the comparison needs a 2D image")
        scale = UnitScale.for_image(plane)
        geometry = _layers.geometry_kwargs(layer, offset=offset)
        spatial = 2  # outputs are 2D: keep the last two dims' scale and translate
        geometry = {
            "scale": geometry["scale"][-spatial:],
            "translate": geometry["translate"][-spatial:],
            "axis_labels": geometry["axis_labels"][-spatial:],
            **({"units": geometry["units"][-spatial:]} if "units" in geometry else {}),
        }
        return scale.to_unit(plane), rgb, geometry, offset

    def run(self):
        """Start the comparison; returns the napari worker (or None, with the reason in the widget)."""
        if self.is_running:
            return None
        layer = self.layer_combo.layer()
        try:
            if layer is None:
                raise ValueError("no image layer is selected; add or pick one")
            image01, rgb, geometry, offset = self._input_image(layer)
            settings = self.settings(rgb)
        except ValueError as exc:
            self._show_error(str(exc))
            return None

        reference = self.reference_mode
        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        self._start_progress(f"Comparing methods on {layer.name}", unit="steps")
        worker = job_worker(compare_job, image01, settings, self._cancel, reference=reference, models=self._models)
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(if_alive(self, lambda outcome: self._on_returned(outcome, layer, geometry)))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def _on_returned(self, outcome: JobOutcome, layer, geometry: dict) -> None:
        self._stop_progress_text()
        self._models.update(outcome.info.get("models", {}))
        if outcome.cancelled:
            self._set_status("Cancelled; nothing was added.")
            return
        if outcome.error is not None:
            self._show_error(f"Comparison failed: {outcome.error}")
            return
        results: CompareResults = outcome.value
        self.results = results
        self._geometry, self._source_name = dict(geometry), layer.name
        self._show_table()
        self._show_plot()
        self._show_summary(layer)
        self._set_status("Adding the comparison's layers…")
        ViewSession.for_viewer(self.viewer).end(self)
        specs = self._layer_specs(results, layer, geometry)
        keep = {spec.name for spec in specs}
        stale = [lay for lay in self.viewer.layers if _layers.is_compare_layer(lay) and lay.name not in keep]
        self.layer_queue.submit(
            specs,
            done=if_alive(self, lambda added: self._on_layers_added(added, results)),
            failed=if_alive(self, self._on_layers_failed),
            remove=stale,
        )

    def _cells(self, results: CompareResults, transposed: bool) -> list[tuple[str, np.ndarray, dict]]:
        """The results montage's cells in order (row by row): ``(name, image, info)``."""
        labels = method_labels(results.settings.methods)

        def info(method, level, run=None, role="result"):
            label = labels.get(method, method_label(method)) if method not in (CLEAN, NOISY) else method
            return {
                "role": role,
                "method": method,
                "label": label,
                "level": level,
                "psnr": getattr(run, "psnr", None),
                "ssim": getattr(run, "ssim", None),
            }

        if not results.reference:
            cells = [(layer_name(results, "input"), results.input, info(NOISY, None, role="input"))]
            cells += [(layer_name(results, run), run.output, info(run.method, None, run)) for run in results.runs]
            return cells
        rows = []
        for level in results.settings.levels:
            row = [(layer_name(results, CLEAN, level), results.clean, info(CLEAN, level, role="clean"))]
            for method in (NOISY, *results.settings.methods):
                run = next(r for r in results.runs if r.method == method and r.level == level)
                row.append((layer_name(results, run), run.output, info(method, level, run)))
            rows.append(row)
        if transposed:  # one column per level
            rows = [list(column) for column in zip(*rows, strict=True)]
        return [cell for row in rows for cell in row]

    def _montage_spec(self, name, cells, shape, limits, look, common) -> LayerSpec:
        """One montage layer: the cells composed, named in their strips, over the input's first cell."""
        low, high = limits
        montage = compose_montage([c[1] for c in cells], [c[0] for c in cells], shape, background=low)
        drawn = draw_cell_names(montage, low, high)
        described = [
            {**cell.as_dict(), **extra, "font_pixels": how["font_pixels"], "elided": how["elided"]}
            for cell, (_name, _data, extra), how in zip(montage.cells, cells, drawn, strict=True)
        ]
        strip = montage.cells[0].top  # rows above the first cell's image
        zoom, shrink = montage.zoom, montage.shrink
        scale = tuple(float(v) * shrink / zoom for v in look["scale"])
        # the first cell's pixels lie exactly over the input's
        translate = (
            look["translate"][0] - (strip + (zoom - 1) / 2) * scale[0],
            look["translate"][1] - (zoom - 1) / 2 * scale[1],
        )
        metadata = {
            COMPARE_KEY: {
                **common,
                "role": "montage",
                "zoom": zoom,
                "shrink": shrink,
                "shape": list(shape),
                "cells": described,
            }
        }
        kwargs = {**look, "scale": scale, "translate": translate, "contrast_limits": limits, "metadata": metadata}
        kwargs["visible"] = False  # Grid view shows it, alone
        return LayerSpec(name, montage.image, kwargs, after=self._watch_double_click)

    def _layer_specs(self, results: CompareResults, layer, geometry: dict) -> list[LayerSpec]:
        """The comparison's montage layer(s); a layer of the user's with the same name is never overwritten."""
        look = {"rgb": results.settings.rgb, **geometry}
        if not results.settings.rgb:
            look["colormap"] = "gray"
        common = {
            "noise": results.settings.noise if results.reference else None,
            "seed": results.settings.seed,
            "source_layer": layer.name,
        }
        shape, transposed = grid_shape(results, tuple(self.viewer.canvas.size))
        taken = {lay.name for lay in self.viewer.layers if not _layers.is_compare_layer(lay)}
        self._names = {}

        def final(name):
            self._names[name] = name if name not in taken else f"{name} [compare]"
            return self._names[name]

        cells = self._cells(results, transposed)
        specs = [self._montage_spec(final(MONTAGE_NAME), cells, shape, (0.0, 1.0), look, common)]
        if not results.reference:
            residuals = [
                (
                    layer_name(results, f"residual:{run.method}"),
                    _layers.residual(results.input, run.output),
                    {**extra, "role": "residual"},
                )
                for run, (_n, _d, extra) in zip(results.runs, cells[1:], strict=True)
            ]
            spread = max(_layers.residual_limits(values)[1] for _name, values, _extra in residuals)
            residual_look = {**look, "colormap": "gray"} if not results.settings.rgb else look
            specs.append(
                self._montage_spec(
                    final(RESIDUAL_MONTAGE_NAME),
                    residuals,
                    (1, len(residuals)),
                    (-spread, spread),
                    residual_look,
                    common,
                )
            )
        return specs

    def _on_layers_added(self, added, results: CompareResults) -> None:
        count = len(results.settings.methods)
        levels = f" × {len(results.settings.levels)} level(s)" if results.reference else ""
        message = (
            f"Done: {count} method(s){levels}, shown in Grid view (switch it off to see your layers again;"
            " Add as layer keeps a result)."
        )
        if results.reference and (results.reference_sigma or 0) > NOISY_REFERENCE_SIGMA:
            message += " ⚠ The reference looks noisy: see the note above the table."
        self._set_status(message)
        self._update_buttons()
        if self.grid_button.isChecked():
            self._on_grid_toggled(True)
        else:
            self.grid_button.setChecked(True)

    # ----------------------------------------------------------------- results as layers
    def selected_results(self) -> list[tuple[str, float | None]]:
        """``(method, level)`` of the results picked in the table (a method's name picks all its levels)."""
        results = self.results
        if results is None:
            return []
        row, column = self.table.currentRow(), self.table.currentColumn()
        if row < 0 or not self.table.selectedItems():
            return []
        if not results.reference:
            runs = results.runs
            return [(runs[row].method, None)] if row < len(runs) else []
        methods = (NOISY, *results.settings.methods)
        if row >= len(methods):
            return []
        levels = results.settings.levels
        if 1 <= column <= len(levels):
            return [(methods[row], levels[column - 1])]
        return [(methods[row], level) for level in levels]

    def add_selected_results(self) -> list:
        """Add the results picked in the table as layers of their own; returns the layers."""
        return [self.add_result_layer(method, level) for method, level in self.selected_results()]

    def add_result_layer(self, method: str, level: float | None = None, *, residual: bool = False):
        """Add one result (``method`` at ``level``; ``CLEAN`` or ``NOISY`` too) as a layer of the user's.

        ``residual=True`` (real noisy data only): what the method removed, input − result.
        """
        results = self.results
        if results is None:
            raise ValueError("run a comparison first")
        if residual:
            run = next((r for r in results.runs if r.method == method), None)
            if run is None or results.reference:
                raise ValueError(f"the comparison has no residual for {method_label(method)}")
            data, name = _layers.residual(results.input, run.output), layer_name(results, f"residual:{method}")
        elif method == CLEAN:
            data, run, name = results.clean, None, layer_name(results, CLEAN, level)
        else:
            run = next((r for r in results.runs if r.method == method and r.level == level), None)
            if run is None:
                raise ValueError(f"the comparison has no result for {method_label(method)} at level {level}")
            data = run.output if method != NOISY or not results.reference else results.noisy.get(level, run.output)
            name = layer_name(results, run) if results.reference or method != NOISY else layer_name(results, "input")
        source = {
            "method": method,
            "residual": residual,
            "label": method_label(method),
            "level": level,
            "noise": results.settings.noise if results.reference else None,
            "seed": results.settings.seed,
            "psnr": getattr(run, "psnr", None),
            "ssim": getattr(run, "ssim", None),
            "seconds": getattr(run, "seconds", None),
            "source_layer": self._source_name,
        }
        existing = next(
            (lay for lay in self.viewer.layers if (lay.metadata or {}).get(SOURCE_KEY) == source and lay.name == name),
            None,
        )
        if existing is not None:  # already added: select it rather than add a copy
            self.viewer.layers.selection.active = existing
            return existing
        names = {lay.name for lay in self.viewer.layers}
        unique, number = name, 2
        while unique in names:
            unique, number = f"{name} ({number})", number + 1
        limits = _layers.residual_limits(data) if residual else (0.0, 1.0)
        look = {"rgb": results.settings.rgb, "contrast_limits": limits, **self._geometry}
        if not results.settings.rgb:
            look["colormap"] = "gray"
        added = self.viewer.add_image(np.array(data, copy=True), name=unique, metadata={SOURCE_KEY: source}, **look)
        self._set_status(f"Added '{unique}' as a layer of its own (switch Grid view off to see it).")
        return added

    def _watch_double_click(self, layer) -> None:
        """A double-click on a cell of the montage adds that cell's result as a layer."""
        if layer in self._watched:  # an updated montage keeps its callback
            return

        def on_double_click(montage_layer, event):
            position = montage_layer.world_to_data(event.position)
            row, column = float(position[-2]), float(position[-1])
            for cell in montage_layer.metadata.get(COMPARE_KEY, {}).get("cells", []):
                top, left, height, width = cell["box"]
                if top - 0.5 <= row < top + height - 0.5 and left - 0.5 <= column < left + width - 0.5:
                    if cell["role"] in ("result", "clean", "input", "residual"):
                        try:
                            self.add_result_layer(cell["method"], cell["level"], residual=cell["role"] == "residual")
                        except ValueError as exc:  # a montage older than the results (a new comparison arriving)
                            self._set_status(f"Could not add '{cell['name']}': {exc}.", error=True)
                    return

        self._watched.add(layer)
        layer.mouse_double_click_callbacks.append(if_alive(self, on_double_click))

    def _on_layers_failed(self, exc) -> None:
        self._show_error(f"The comparison finished but its layers could not be added: {exc}")
        self._update_buttons()

    def _show_table(self) -> None:
        results = self.results
        if results is None:
            return
        headers, rows = records(results)
        self.table.set_records(headers, rows)
        if results.reference:
            metric = self.metric.currentData() or "psnr"
            header, _, decimals, _ = METRICS[metric]
            row_labels, column_labels, values, best = score_grid(results, metric)
            tooltips = self._cell_tooltips(results)
            self.table.show_grid(
                header, row_labels, column_labels, values, decimals=decimals, bold=best, tooltips=tooltips
            )
        else:
            labels = method_labels(results.settings.methods)
            rows = [[r.residual_sigma, r.seconds] for r in results.runs]
            self.table.show_grid(
                "Method", [labels[r.method] for r in results.runs], ["Residual σ (0-255)", "Time (s)"], rows, decimals=2
            )
        self._update_buttons()

    @staticmethod
    def _cell_tooltips(results: CompareResults) -> list[list[str]]:
        by_key = {(run.method, run.level): run for run in results.runs}
        tips = []
        for method in (NOISY, *results.settings.methods):
            row = []
            for level in results.settings.levels:
                run = by_key.get((method, level))
                if run is None:
                    row.append("")
                    continue
                text = f"PSNR {run.psnr:.2f} dB, SSIM {run.ssim:.4f}"
                row.append(text if method == NOISY else text + f", {run.seconds:.2f} s")
            tips.append(row)
        return tips

    def _show_plot(self) -> None:
        results = self.results
        if results is None or not results.reference:
            self.plot.clear("no clean reference: PSNR needs one\n(see the residual layers instead)")
            return
        labels = method_labels(results.settings.methods)
        series = {}
        for method in (NOISY, *results.settings.methods):
            runs = [r for r in results.runs if r.method == method]
            name = "noisy input" if method == NOISY else labels[method]
            series[name] = ([r.level for r in runs], [r.psnr for r in runs])
        unit = LEVELS.get(results.settings.noise, ("", "level"))[1]
        self.plot.plot(
            series, xlabel=f"{results.settings.noise}: {unit}", ylabel="PSNR (dB)", title="PSNR against noise level"
        )

    def _show_summary(self, layer) -> None:
        results = self.results
        if results.reference:
            sigma = results.reference_sigma
            if sigma is not None and sigma > NOISY_REFERENCE_SIGMA:
                self.summary.setStyleSheet(WARNING_STYLE)
                self.summary.setText(
                    f"⚠ The reference '{layer.name}' looks noisy (estimated σ ≈ {sigma:.1f} on 0-255): these PSNR/SSIM"
                    " values compare the methods with a noisy image, not with the truth."
                )
            else:
                self.summary.setStyleSheet("")
                self.summary.setText("")
        else:
            self.summary.setStyleSheet("")
            self.summary.setText(
                f"Estimated noise σ of the input: {results.estimated_sigma:.2f} (0-255 scale). A residual σ close to it"
                " means a method removed about that much noise; Residuals shows what each removed."
            )
        self.summary.setVisible(bool(self.summary.text()))

    def _on_finished(self) -> None:
        if not self._finish_job():
            return
        self._update_buttons()
