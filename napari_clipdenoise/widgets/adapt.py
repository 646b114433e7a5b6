"""The Adapt dock widget: fine-tune a model on the viewer's noisy layers, watch the loss, install it by name.

Building the widget reads only the model cache folder. The run happens in a
worker thread (``napari_clipdenoise.adapt``), reports every step, and can be
cancelled at any step; the installed model then appears in every model list of
the application (the Denoise widget's, the comparison's methods).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Generator

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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

from ..adaptation.settings import DECODER_BLOCKS, MIN_CROP, AdaptSettings
from ..errors import AdaptCancelled
from ..inference.axes import parse_axes
from ..jobs import JobOutcome
from ..model.registry import BUNDLED, REGISTRY
from ..model.sources import validate_model_name
from . import _layers
from ._job import JobWidgetMixin
from ._model_combo import ModelCombo, notify_models_changed
from ._plot import LinePlot
from ._worker import if_alive, job_worker

logger = logging.getLogger(__name__)

WHOLE_LAYERS = "Whole layers"
#: Output layers of the other widgets are listed last and not ticked by default.
OUTPUT_SUFFIXES = ("_denoised", "_denoised_preview", "_residual", "_residual_preview")
#: Redraw the loss plot at most this often (seconds) between evaluations: drawing holds the GIL the training needs.
PLOT_INTERVAL = 2.0
POLL_INTERVAL = 0.05


def adapt_job(images, axes, source, name: str, settings: AdaptSettings, overwrite: bool, cancel: threading.Event):
    """The worker's generator: run ``adapt`` in a helper thread, yield each ``AdaptProgress``.

    Returns a :class:`JobOutcome` with the adapted model; errors and cancellation
    are returned, not raised, so the widget decides how to show them.
    """
    from ..adaptation.loop import adapt

    reports: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = adapt(
                images,
                source,
                axes=axes,
                settings=settings,
                name=name,
                overwrite=overwrite,
                progress=reports.put,
                cancel=cancel,
            )
        except BaseException as exc:  # handed to the widget below
            outcome["error"] = exc

    started = time.perf_counter()
    thread = threading.Thread(target=target, name="clipdenoise-adapt", daemon=True)
    thread.start()
    try:
        yield from _reports(reports, thread)
    finally:
        if thread.is_alive():  # the worker was quit: stop the run and let it end
            cancel.set()
            thread.join()
    error = outcome.get("error")
    if isinstance(error, AdaptCancelled) or (error is None and cancel.is_set() and "value" not in outcome):
        return JobOutcome(cancelled=True)
    if error is not None:
        logger.debug("adapt job failed", exc_info=error)
        return JobOutcome(error=error)
    return JobOutcome(outcome["value"], info={"seconds": time.perf_counter() - started})


def _reports(reports: queue.SimpleQueue, thread: threading.Thread) -> Generator:
    while True:
        try:
            yield reports.get(timeout=POLL_INTERVAL)
        except queue.Empty:
            if not thread.is_alive():
                break
    while not reports.empty():
        yield reports.get_nowait()


def region_boxes(shapes_layer, image_layer) -> list[tuple[slice, slice]]:
    """Each shape's bounding box as (rows, cols) slices of ``image_layer``'s data (in world coordinates)."""
    import numpy as np

    array = _layers.layer_array(image_layer)
    layout = parse_axes(_layers.layer_axes(image_layer), tuple(array.shape))
    height, width = int(array.shape[layout.y]), int(array.shape[layout.x])
    boxes = []
    for vertices in shapes_layer.data:
        world = np.array([shapes_layer.data_to_world(v) for v in np.asarray(vertices)])
        data = np.array([image_layer.world_to_data(w[-image_layer.ndim :]) for w in world])
        rows, cols = data[:, layout.y], data[:, layout.x]
        top, bottom = int(max(0, np.floor(rows.min()))), int(min(height, np.ceil(rows.max()) + 1))
        left, right = int(max(0, np.floor(cols.min()))), int(min(width, np.ceil(cols.max()) + 1))
        if bottom > top and right > left:
            boxes.append((slice(top, bottom), slice(left, right)))
    return boxes


class AdaptWidget(JobWidgetMixin, QWidget):
    """Dock widget: adapt a CLIP denoiser to the noise of the chosen layers (no clean images needed).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_job_state()
        self._curve: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_loss": []}
        self._last_draw = 0.0
        self.result = None  # the last adapted DenoisingModel
        self._build()
        events = napari_viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self.refresh_layers)
        events.inserted.connect(self._watch_name)
        for layer in napari_viewer.layers:
            self._watch_name(layer)
        self.refresh_layers()

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        self.layers_list = QListWidget(self)
        self.layers_list.setMaximumHeight(100)
        self.layers_list.setToolTip("The noisy layers to learn from (all must be of one kind: RGB or not)")
        self.region = QComboBox(self)
        self.region.setToolTip("Learn from whole layers, or only inside the shapes of a Shapes layer")
        self.model_combo = ModelCombo(self)
        self.model_combo.setToolTip("The base model to adapt (a CLIP denoiser)")
        self.name_edit = QLineEdit(self)
        self.name_edit.setPlaceholderText("e.g. my_scope")
        self.name_edit.setToolTip("The adapted model is installed under this name (letters, digits, _ - .)")
        self.name_note = QLabel(self)
        self.name_note.setWordWrap(True)
        self.name_note.setStyleSheet("color: gray;")
        self.minutes = QDoubleSpinBox(self)
        self.minutes.setRange(0.1, 600.0)
        self.minutes.setDecimals(1)
        self.minutes.setValue(5.0)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Training time budget (the best held-out result within it is kept)")

        self.advanced_toggle = QToolButton(self)
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setStyleSheet("QToolButton { border: none; }")
        self.advanced = QWidget(self)
        defaults = AdaptSettings()
        self.steps = QSpinBox(self.advanced)
        self.steps.setRange(0, 1_000_000)
        self.steps.setSpecialValueText("time budget only")
        self.steps.setToolTip("Stop after this many steps (0: only the time budget counts)")
        self.stages = QSpinBox(self.advanced)
        self.stages.setRange(1, DECODER_BLOCKS)
        self.stages.setValue(defaults.decoder_stages)
        self.stages.setToolTip("Decoder blocks trained, counted from the output (the encoder always stays frozen)")
        self.crop_size = QSpinBox(self.advanced)
        self.crop_size.setRange(MIN_CROP, 512)
        self.crop_size.setSingleStep(16)
        self.crop_size.setValue(defaults.crop_size)
        self.crop_size.setSuffix(" px")
        self.structured = QComboBox(self.advanced)
        self.structured.addItems(["none", "X (rows)", "Y (columns)"])
        self.structured.setToolTip("For noise correlated along rows or columns (stripes): hide a line of pixels")
        self.feature_aug = QCheckBox("Feature augmentation (the paper's, level 0.025)", self.advanced)
        self.seed = QSpinBox(self.advanced)
        self.seed.setRange(0, 2**31 - 1)
        self.overwrite = QCheckBox("Replace an installed model of that name", self.advanced)
        advanced_form = QFormLayout(self.advanced)
        advanced_form.setContentsMargins(12, 0, 0, 0)
        advanced_form.addRow("Steps", self.steps)
        advanced_form.addRow("Decoder stages", self.stages)
        advanced_form.addRow("Crop size", self.crop_size)
        advanced_form.addRow("Structured mask", self.structured)
        advanced_form.addRow(self.feature_aug)
        advanced_form.addRow("Seed", self.seed)
        advanced_form.addRow(self.overwrite)
        self.advanced.setVisible(False)

        self.start_button = QPushButton("Start", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = LinePlot(self, height=2.2)
        self.plot.clear("the masked loss appears here during training")

        form = QFormLayout()
        form.addRow("Layers", self.layers_list)
        form.addRow("Region", self.region)
        form.addRow("Base model", self.model_combo)
        form.addRow("Save as", self.name_edit)
        form.addRow(self.name_note)
        form.addRow("Time budget", self.minutes)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addStretch(1)

        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        self.name_edit.textEdited.connect(self._check_name)
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(self.cancel)
        self._check_name(self.name_edit.text())

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # ----------------------------------------------------------------- layers
    def _watch_name(self, event_or_layer) -> None:
        layer = getattr(event_or_layer, "value", event_or_layer)
        layer.events.name.connect(self.refresh_layers)

    def refresh_layers(self, *_) -> None:
        """Re-list the image layers (keeping ticks) and the Shapes layers offered as regions."""
        from napari.layers import Image, Shapes

        try:
            ticked = set(self.selected_layer_names())
        except RuntimeError:  # the widget is gone; napari holds only weak references to this callback
            return
        known = {self.layers_list.item(i).text() for i in range(self.layers_list.count())}
        images = [
            layer for layer in self.viewer.layers if isinstance(layer, Image) and not _layers.is_compare_layer(layer)
        ]
        inputs = [layer for layer in images if not layer.name.endswith(OUTPUT_SUFFIXES)]
        ordered = inputs + [layer for layer in images if layer not in inputs]
        self.layers_list.clear()
        active = self.viewer.layers.selection.active
        for layer in ordered:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            if layer.name in known:
                checked = layer.name in ticked
            else:  # a new layer: ticked when it is the only input or the active one
                checked = layer in inputs and (len(inputs) == 1 or layer is active or not ticked)
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.layers_list.addItem(item)
        region = self.region.currentText()
        self.region.blockSignals(True)
        self.region.clear()
        self.region.addItem(WHOLE_LAYERS)
        self.region.addItems([layer.name for layer in self.viewer.layers if isinstance(layer, Shapes)])
        index = self.region.findText(region)
        self.region.setCurrentIndex(max(index, 0))
        self.region.blockSignals(False)
        self._update_buttons()

    def selected_layer_names(self) -> list[str]:
        return [
            self.layers_list.item(i).text()
            for i in range(self.layers_list.count())
            if self.layers_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_layers(self, names) -> None:
        """Tick exactly the image layers ``names``."""
        wanted = set(names)
        listed = {self.layers_list.item(i).text() for i in range(self.layers_list.count())}
        if wanted - listed:
            raise ValueError(f"no image layer(s) named {sorted(wanted - listed)} in the viewer")
        for i in range(self.layers_list.count()):
            item = self.layers_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in wanted else Qt.CheckState.Unchecked)
        self._update_buttons()

    def training_data(self) -> tuple[list, list[str]]:
        """The arrays to learn from and their axes: the ticked layers, cut to the region's shapes if one is chosen."""
        names = self.selected_layer_names()
        if not names:
            raise ValueError("tick at least one image layer to learn from")
        images, axes = [], []
        region = self.region.currentText()
        shapes = self.viewer.layers[region] if region and region != WHOLE_LAYERS else None
        for name in names:
            layer = self.viewer.layers[name]
            array = _layers.layer_array(layer)
            layer_axes = _layers.layer_axes(layer)
            if shapes is None:
                images.append(array)
                axes.append(layer_axes)
                continue
            boxes = region_boxes(shapes, layer)
            if not boxes:
                raise ValueError(f"the Shapes layer {region!r} has no shape over the layer {name!r}; draw a rectangle")
            layout = parse_axes(layer_axes, tuple(array.shape))
            for rows, cols in boxes:
                key = [slice(None)] * len(array.shape)
                key[layout.y], key[layout.x] = rows, cols
                images.append(array[tuple(key)])
                axes.append(layer_axes)
        return images, axes

    # ----------------------------------------------------------------- settings
    def _check_name(self, text: str) -> str | None:
        """The name to install under, or None (the reason is shown under the field)."""
        from ..model.registry import installed_models

        name = text.strip()
        problem = ""
        if not name:
            problem = "Name the adapted model to install it."
        else:
            try:
                validate_model_name(name)
            except ValueError as exc:
                problem = str(exc)
            else:
                if name in REGISTRY or name in BUNDLED:
                    problem = f"{name!r} names a published model; choose a name of your own."
        if problem:
            self.name_note.setText(problem)
            self.name_note.setStyleSheet("color: #ff6b6b;" if name else "color: gray;")
            return None
        exists = name in installed_models()
        self.name_note.setText(
            f"A model {name!r} is installed; tick “Replace…” under Advanced to overwrite it." if exists else ""
        )
        self.name_note.setStyleSheet("color: #ffb347;" if exists else "color: gray;")
        return name

    def settings(self) -> AdaptSettings:
        """The run's settings; raises ValueError (an OptionError naming the field) for a bad combination."""
        structured = {0: None, 1: "X", 2: "Y"}[self.structured.currentIndex()]
        steps = self.steps.value() or None
        return AdaptSettings(
            steps=steps,
            max_minutes=float(self.minutes.value()),
            crop_size=self.crop_size.value(),
            decoder_stages=self.stages.value(),
            structured_axis=structured,
            feature_aug_level=0.025 if self.feature_aug.isChecked() else 0.0,
            seed=self.seed.value(),
        )

    def _update_buttons(self) -> None:
        running = self.is_running
        self.start_button.setEnabled(not running and self.layers_list.count() > 0)
        self.cancel_button.setEnabled(running)
        for widget in (self.layers_list, self.region, self.model_combo, self.name_edit, self.minutes, self.advanced):
            widget.setEnabled(not running)

    # ----------------------------------------------------------------- running
    def start(self):
        """Start adapting; returns the napari worker, or None when nothing was started (the reason is shown)."""
        if self.is_running:
            return None
        try:
            name = self._check_name(self.name_edit.text())
            if name is None:
                raise ValueError(self.name_note.text())
            source = self.model_combo.source()
            if source is None:
                raise ValueError("pick a base model (or load a checkpoint file)")
            hint = self.model_combo.missing_hint()
            if hint:
                raise ValueError(hint)
            settings = self.settings()
            images, axes = self.training_data()
        except ValueError as exc:
            self._show_error(str(exc))
            return None

        from napari.utils import progress

        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        self._curve = {"step": [], "loss": [], "val_step": [], "val_loss": []}
        self._last_draw = 0.0
        self.plot.clear("reading the layers…")
        self._pbar = progress(total=0, desc=f"Adapting {source} → {name}")
        self.progress_bar.setRange(0, 0)
        self._set_status(f"Adapting {source} to {len(images)} image(s); reading the data…")
        worker = job_worker(adapt_job, images, axes, source, name, settings, self.overwrite.isChecked(), self._cancel)
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(if_alive(self, lambda outcome: self._on_returned(outcome, name)))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def _on_progress(self, report) -> None:
        if report.phase == "training" and report.loss is not None:
            self._curve["step"].append(report.step)
            self._curve["loss"].append(report.loss)
        if report.phase in ("preparing", "validating", "finished") and report.val_loss is not None:
            if not self._curve["val_step"] or self._curve["val_step"][-1] != report.step:
                self._curve["val_step"].append(report.step)
                self._curve["val_loss"].append(report.val_loss)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(int(report.fraction * 1000))
        self.progress_bar.setFormat(f"step {report.step} · {report.elapsed_s / 60:.1f} min")
        if self._pbar is not None:
            self._pbar.set_description(f"Adapting: step {report.step}")
        if report.phase == "training":
            self._set_status(f"Training… step {report.step}, masked loss {report.loss:.4g}")
        now = time.perf_counter()
        if report.phase != "training" or now - self._last_draw >= PLOT_INTERVAL:
            self._last_draw = now
            self.draw_curve()

    def draw_curve(self) -> None:
        """Plot the training loss (a running mean over 10 steps) and the held-out masked loss."""
        import numpy as np

        series = {}
        steps, losses = self._curve["step"], self._curve["loss"]
        if steps:
            window = min(10, len(losses))
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid").tolist()
            series["training"] = (steps[window - 1 :], smooth)
        if self._curve["val_step"]:
            series["held-out"] = (self._curve["val_step"], self._curve["val_loss"])
        if series:
            self.plot.plot(series, xlabel="step", ylabel="masked loss", title="self-supervised loss")

    def _on_returned(self, outcome: JobOutcome, name: str) -> None:
        if outcome.cancelled:
            self._set_status("Cancelled; nothing was installed.")
            return
        if outcome.error is not None:
            self._show_error(f"Adaptation failed: {outcome.error}")
            return
        model = outcome.value
        self.result = model
        record = model.metadata["adaptation"]
        self._curve["val_step"], self._curve["val_loss"] = (
            list(record["loss_curve"]["val_step"]),
            list(record["loss_curve"]["val_loss"]),
        )
        self.draw_curve()
        self.refresh_model_lists()
        base, best = record.get("base_val_loss"), record.get("best_val_loss")
        change = f" Held-out masked loss {base:.4g} → {best:.4g}." if base is not None and best is not None else ""
        note = " No step improved on the base model, so its weights were kept." if record["best_step"] == 0 else ""
        self._set_status(
            f"Installed '{name}' ({record['steps']} steps in {record['elapsed_s'] / 60:.1f} min,"
            f" {record['stop_reason']}).{change}{note} It is now in the Denoise widget's model list and among the"
            " comparison's methods."
        )

    def refresh_model_lists(self) -> None:
        """Make every model list of the application show the new model (ModelCombos, the comparison's methods)."""
        notify_models_changed()
        for widget in QApplication.allWidgets():
            refresh = getattr(widget, "refresh_methods", None)
            if callable(refresh) and widget is not self:
                try:
                    refresh()
                except RuntimeError:  # a widget being deleted
                    pass

    def _on_finished(self) -> None:
        if not self._finish_job():
            return
        self.progress_bar.setFormat("%p%")
        self._update_buttons()
