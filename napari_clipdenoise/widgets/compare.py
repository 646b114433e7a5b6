"""The noise-level comparison dock widget: methods x noise levels, with layers, a table and a plot.

With a clean reference, the widget adds seeded noise at each level, runs every
checked method on each noisy image and scores it against the reference (PSNR,
SSIM from :mod:`napari_clipdenoise.metrics`). Without one (real noisy data), it
runs the methods on the layer as it is and shows results, residuals and the
input's estimated noise level. All output layers are named ``[compare] ...`` and
are replaced by the next comparison.
"""

from __future__ import annotations

import threading

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
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..baselines import CLASSICAL_METHODS, available_methods
from ..comparison import CLIP_PREFIX, NOISY, CompareResults, CompareSettings, compare_job, method_label
from ..jobs import JobOutcome, Progress
from ..model.registry import REGISTRY, install_hint, installed_models
from ..model.sources import parse_model_source
from ..noise import NOISE_MODELS
from ..unit_scale import UnitScale
from . import _layers
from ._inference_options import InferenceOptionsPanel
from ._job import JobWidgetMixin
from ._layer_combo import ImageLayerCombo
from ._model_combo import CHECKPOINT_FILTER
from ._plot import LinePlot
from ._table import ResultsTable
from ._worker import if_alive

LAYER_PREFIX = "[compare] "
MODE_REFERENCE = "Add noise to a clean reference"
MODE_REAL = "Real noisy data (no reference)"

#: Default levels and the unit of the level, per noise model.
LEVELS = {
    "gaussian": ("15, 25, 50", "sigma (0-255 scale)"),
    "poisson": ("2, 2.5, 3, 3.5", "scale (the paper's Poisson parameter)"),
    "poisson_peak": ("100, 30, 10", "peak photon count"),
    "spatial_gaussian": ("40, 45, 50, 55", "sigma before the 3x3 blur (0-255 scale)"),
    "speckle": ("0.1, 0.2, 0.3", "relative standard deviation"),
    "salt_pepper": ("0.01, 0.05, 0.1", "fraction of pixels"),
}
DEFAULT_CLASSICAL = ("nl_means", "wavelet")


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


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


class CompareWidget(JobWidgetMixin, QWidget):
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
        self._build()
        self._on_mode_changed()
        self._on_noise_changed(self.noise.currentText())

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        self.mode = QComboBox(self)
        self.mode.addItems([MODE_REFERENCE, MODE_REAL])
        self.layer_combo = ImageLayerCombo(self.viewer, self, exclude_suffixes=("_denoised", "_residual"))
        self.noise = QComboBox(self)
        for kind, description in NOISE_MODELS.items():
            self.noise.addItem(kind)
            self.noise.setItemData(self.noise.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        self.levels = QLineEdit(self)
        self.levels.setToolTip("Comma-separated noise levels")
        self.level_unit = QLabel(self)
        self.level_unit.setStyleSheet("color: gray;")
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The same seed and settings give the same noisy images and numbers")
        self.methods = QListWidget(self)
        self.methods.setMaximumHeight(110)
        self._fill_methods()
        self.add_checkpoint_button = QPushButton("Add checkpoint…", self)
        self.add_checkpoint_button.setToolTip("Add a CLIP denoiser checkpoint file (.safetensors or reference .pth)")
        self.refresh_methods_button = QToolButton(self)
        self.refresh_methods_button.setText("↻")
        self.refresh_methods_button.setToolTip("Re-read the model cache (after installing a model)")

        options = InferenceOptionsPanel(self, "CLIP tiling and device", "whole image")
        self.advanced_toggle, self.advanced = options.toggle, options.panel
        self.tile_size, self.overlap = options.tile_size, options.overlap
        self.device, self.precision = options.device, options.precision
        self._options = options

        self.run_button = QPushButton("Compare", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.grid_button = QPushButton("Grid view", self)
        self.grid_button.setCheckable(True)
        self.grid_button.setToolTip("Show the comparison layers side by side (napari grid mode)")
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.table = ResultsTable(self)
        self.table.setMinimumHeight(120)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the table (tab-separated, pastes into spreadsheets)")
        self.export_button = QPushButton("Export CSV…", self)
        self.plot = LinePlot(self)

        self._form = form = QFormLayout()
        form.addRow("Mode", self.mode)
        form.addRow("Image", self.layer_combo)
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
        buttons.addWidget(self.grid_button)
        table_buttons = QHBoxLayout()
        table_buttons.addStretch(1)
        table_buttons.addWidget(self.copy_button)
        table_buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addLayout(table_buttons)
        layout.addWidget(self.plot, 1)

        self.mode.currentIndexChanged.connect(lambda _: self._on_mode_changed())
        self.noise.currentTextChanged.connect(self._on_noise_changed)
        self.add_checkpoint_button.clicked.connect(self._on_add_checkpoint)
        self.refresh_methods_button.clicked.connect(self.refresh_methods)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.grid_button.toggled.connect(self._on_grid_toggled)
        self.copy_button.clicked.connect(self.table.copy_to_clipboard)
        self.export_button.clicked.connect(self._on_export)
        self._update_buttons()

    def refresh_methods(self) -> None:
        """Re-list the methods (newly installed models appear), keeping added checkpoints and ticks."""
        items = [self.methods.item(i) for i in range(self.methods.count())]
        ticked = {item.data(Qt.ItemDataRole.UserRole) for item in items if item.checkState() == Qt.CheckState.Checked}
        listed = {item.data(Qt.ItemDataRole.UserRole) for item in items}
        checkpoints = [
            m for m in listed if m.startswith(CLIP_PREFIX) and parse_model_source(m[len(CLIP_PREFIX) :]).is_file
        ]
        self.methods.clear()
        self._fill_methods()
        for method in checkpoints:
            self.add_checkpoint(method[len(CLIP_PREFIX) :])
        for i in range(self.methods.count()):
            item = self.methods.item(i)
            method = item.data(Qt.ItemDataRole.UserRole)
            if item.flags() & Qt.ItemFlag.ItemIsUserCheckable and method in listed:  # new entries keep their default
                item.setCheckState(Qt.CheckState.Checked if method in ticked else Qt.CheckState.Unchecked)

    def _fill_methods(self) -> None:
        installed = installed_models()
        for name in list(REGISTRY) + [n for n in installed if n not in REGISTRY]:
            item = QListWidgetItem(f"CLIP {name}" + ("" if name in installed else " (not installed)"))
            item.setData(Qt.ItemDataRole.UserRole, CLIP_PREFIX + name)
            if name in installed:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if name == installed[0] else Qt.CheckState.Unchecked)
                item.setToolTip(REGISTRY[name].description if name in REGISTRY else name)
            else:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled & ~Qt.ItemFlag.ItemIsUserCheckable)
                item.setToolTip(install_hint(name))
            self.methods.addItem(item)
        for method in available_methods():
            item = QListWidgetItem(method)
            item.setData(Qt.ItemDataRole.UserRole, method)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if method in DEFAULT_CLASSICAL else Qt.CheckState.Unchecked)
            item.setToolTip(CLASSICAL_METHODS[method])
            self.methods.addItem(item)

    # ----------------------------------------------------------------- options
    @property
    def reference_mode(self) -> bool:
        return self.mode.currentText() == MODE_REFERENCE

    def set_methods(self, methods) -> None:
        """Check exactly ``methods`` (classical names, ``clip:<name>`` or checkpoint paths via ``add_checkpoint``)."""
        wanted = list(methods)
        items = [self.methods.item(i) for i in range(self.methods.count())]
        known = [
            item.data(Qt.ItemDataRole.UserRole) for item in items if item.flags() & Qt.ItemFlag.ItemIsUserCheckable
        ]
        missing = [m for m in wanted if m not in known]
        if missing:
            raise ValueError(f"unknown method(s) {missing} (a CLIP model must be installed); available: {known}")
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
        """Add a checkpoint file as a (checked) CLIP method; returns its method name."""
        import os

        method = CLIP_PREFIX + os.fspath(path)
        for i in range(self.methods.count()):
            if self.methods.item(i).data(Qt.ItemDataRole.UserRole) == method:
                self.methods.item(i).setCheckState(Qt.CheckState.Checked)
                return method
        item = QListWidgetItem(method_label(method))
        item.setData(Qt.ItemDataRole.UserRole, method)
        item.setToolTip(os.fspath(path))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.methods.insertItem(0, item)
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

    def _on_mode_changed(self) -> None:
        reference = self.reference_mode
        for widget in (self.noise, self.levels, self.level_unit, self.seed):
            self._form.setRowVisible(widget, reference)
        self.layer_combo.setToolTip("The clean image" if reference else "The noisy image to denoise as it is")
        self._form.labelForField(self.layer_combo).setText("Clean image" if reference else "Noisy image")

    def _on_noise_changed(self, kind: str) -> None:
        levels, unit = LEVELS.get(kind, ("", ""))
        self.levels.setText(levels)
        self.level_unit.setText(f"level = {unit}")

    def _on_add_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a CLIP denoiser checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.add_checkpoint(path)

    def _on_grid_toggled(self, enabled: bool) -> None:
        grid_of(self.viewer).enabled = enabled
        # name each grid cell: the comparison's layers always, the chosen image while the grid is on
        layer = self.layer_combo.layer()
        if layer is not None and not layer.name.startswith(LAYER_PREFIX):
            if enabled and not layer.name_overlay.visible:
                layer.name_overlay.visible = True
                self._named_input = layer
            elif not enabled and getattr(self, "_named_input", None) is layer:
                layer.name_overlay.visible = False
                self._named_input = None

    def _on_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the comparison table", "comparison.csv", "CSV (*.csv)")
        if path:
            self.table.export_csv(path)
            self._set_status(f"Table written to {path}")

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

        from napari.qt.threading import create_worker
        from napari.utils import progress

        reference = self.reference_mode
        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        self._pbar = progress(total=0, desc=f"Comparing methods on {layer.name}")
        self.progress_bar.setRange(0, 0)
        where = f" (plane {tuple(offset.values())})" if offset else ""
        self._set_status(f"Comparing {len(settings.methods)} method(s) on {layer.name}{where}…")
        worker = create_worker(
            compare_job, image01, settings, self._cancel, reference=reference, models=self._models, _start_thread=False
        )
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(if_alive(self, lambda outcome: self._on_returned(outcome, layer, geometry, reference)))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def _on_progress(self, report: Progress) -> None:
        if report.message:
            self.status.setText(report.message)
            if self._pbar is not None:
                self._pbar.set_description(report.message)
        if report.total <= 0:
            return
        self.progress_bar.setRange(0, report.total)
        self.progress_bar.setValue(report.done)
        if self._pbar is not None:
            if self._pbar.total != report.total:
                self._pbar.total = report.total
            if report.done > self._pbar.n:
                self._pbar.update(report.done - self._pbar.n)

    def _on_returned(self, outcome: JobOutcome, layer, geometry: dict, reference: bool) -> None:
        self._models.update(outcome.info.get("models", {}))
        if outcome.cancelled:
            self._set_status("Cancelled; nothing was added.")
            return
        if outcome.error is not None:
            self._show_error(f"Comparison failed: {outcome.error}")
            return
        results: CompareResults = outcome.value
        self.results = results
        if reference:
            self._show_reference_results(results)
        else:
            self._show_real_results(results)
        try:
            self._show_layers(results, layer, geometry, reference)
        except Exception as exc:  # report it and stay usable; the table and plot are already shown
            self._show_error(f"The comparison finished but its layers could not be added: {exc}")
            return
        count = len(results.methods) - (1 if reference else 0)
        levels = f" × {len(results.settings.levels)} level(s)" if reference else ""
        self._set_status(
            f"Done: {count} method(s){levels}. Layers are named '{LAYER_PREFIX}…'; Grid view shows them side by side."
        )

    def _show_layers(self, results: CompareResults, layer, geometry: dict, reference: bool) -> None:
        """Put each result in a ``[compare] ...`` layer (updated in place when the name exists)."""
        look = {"rgb": results.settings.rgb, "contrast_limits": (0.0, 1.0), **geometry}
        if not results.settings.rgb:
            look["colormap"] = "gray"
        kind = results.settings.noise
        outputs: dict[str, tuple[np.ndarray, dict]] = {}
        for run in results.runs:
            label = method_label(run.method)
            if reference:
                name = f"{LAYER_PREFIX}{kind} {run.level:g} · {'noisy' if run.method == NOISY else label}"
            else:
                name = f"{LAYER_PREFIX}{label}"
            meta = {
                "clipdenoise_compare": {
                    "method": run.method,
                    "level": run.level,
                    "noise": kind if reference else None,
                    "seed": results.settings.seed,
                    "psnr": run.psnr,
                    "ssim": run.ssim,
                    "source_layer": layer.name,
                }
            }
            outputs[name] = (run.output, {**look, "metadata": meta})
            if not reference:
                values = _layers.residual(results.input, run.output)
                outputs[f"{name} residual"] = (values, {**look, "contrast_limits": _layers.residual_limits(values)})
        # grid mode re-lays out the canvas on every layer change: switch it off while layers change
        grid = grid_of(self.viewer)
        gridded, grid.enabled = grid.enabled, False
        try:
            stale = [lay for lay in self.viewer.layers if lay.name.startswith(LAYER_PREFIX) and lay.name not in outputs]
            for old in stale:
                self.viewer.layers.remove(old)
            for name, (data, kwargs) in outputs.items():
                added = _layers.add_or_update_image(self.viewer, name, data, **kwargs)
                added.name_overlay.visible = True  # names each cell in grid view
        finally:
            grid.enabled = gridded

    def _show_reference_results(self, results: CompareResults) -> None:
        headers = ["Method", "Level", "PSNR (dB)", "SSIM", "Time (s)"]
        rows = [[method_label(r.method), r.level, r.psnr, r.ssim, r.seconds] for r in results.runs]
        self.table.set_rows(headers, rows, [None, "g", 2, 4, 2])
        series = {}
        for method in results.methods:
            runs = [r for r in results.runs if r.method == method]
            series[method_label(method)] = ([r.level for r in runs], [r.psnr for r in runs])
        unit = LEVELS.get(results.settings.noise, ("", "level"))[1]
        self.plot.plot(
            series,
            xlabel=f"{results.settings.noise} noise: {unit}",
            ylabel="PSNR (dB)",
            title="PSNR against noise level",
        )
        self.summary.setText("")
        self._update_buttons()

    def _show_real_results(self, results: CompareResults) -> None:
        headers = ["Method", "Residual σ (0-255)", "Time (s)"]
        rows = [[method_label(r.method), r.residual_sigma, r.seconds] for r in results.runs]
        self.table.set_rows(headers, rows, [None, 2, 2])
        self.summary.setText(
            f"Estimated noise σ of the input: {results.estimated_sigma:.2f} (0-255 scale). A residual σ close to it"
            " means a method removed about that much noise; look at the residual layers for structure it removed."
        )
        self.plot.clear("no clean reference: PSNR needs one\n(see the residual layers instead)")
        self._update_buttons()

    def _on_finished(self) -> None:
        if not self._finish_job():
            return
        self._update_buttons()
