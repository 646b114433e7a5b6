"""The Denoise dock widget: pick a layer and a model, run in a worker thread, get ``<input>_denoised``.

Building the widget reads only the model cache folder (and checkpoint headers);
torch is imported and the model loaded in the worker thread on the first run,
and kept for later runs. Everything slow happens off the GUI thread (loading,
denoising, the residual); result layers are added one per event-loop turn.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import CheckpointError, DenoiseCancelled, ModelNotInstalledError
from ..inference.axes import parse_axes
from ..inference.options import InferenceOptions
from ..jobs import JobOutcome, Progress, iterate_progress
from . import _large, _layers
from ._before_after import BeforeAfterRow
from ._ct_controls import CTControls
from ._inference_options import InferenceOptionsPanel
from ._job import ERROR_STYLE, JobWidgetMixin
from ._layer_combo import ImageLayerCombo
from ._layer_queue import LayerQueue, LayerSpec
from ._model_combo import CHECKPOINT_FILTER, ModelCombo
from ._model_panel import ModelStatePanel
from ._scroll import ScrollingDockMixin, scrolling_content
from ._worker import if_alive, job_worker

logger = logging.getLogger(__name__)

DENOISED_SUFFIX = "_denoised"
PREVIEW_SUFFIX = "_denoised_preview"
RESIDUAL_SUFFIX = "_residual"
RESIDUAL_PREVIEW_SUFFIX = "_residual_preview"
OUTPUT_SUFFIXES = (DENOISED_SUFFIX, PREVIEW_SUFFIX, RESIDUAL_SUFFIX, RESIDUAL_PREVIEW_SUFFIX)
NOTE_STYLE = "color: #9aa0a6;"


@dataclass(frozen=True)
class DenoiseSettings:
    """The options of one run: the layer's axes and the core's inference options."""

    axes: str
    options: InferenceOptions = field(default_factory=InferenceOptions)

    def record(self) -> dict:
        """What a result layer's metadata says about the run."""
        return {"axes": self.axes, **self.options.as_record()}


def denoise_job(
    image, source, settings: DenoiseSettings, cancel: threading.Event
) -> Generator[Progress, None, JobOutcome]:
    """The worker's generator: load the model (if needed), denoise, yield per tile batch.

    Returns a :class:`JobOutcome` whose value is the result array; errors and
    cancellation are returned, not raised, so the widget decides how to show them.
    """
    from ..model.registry import DenoisingModel

    started = time.perf_counter()
    try:
        if not isinstance(source, DenoisingModel):
            yield Progress(0, 0, "loading model")
        from ..inference.pipeline import denoise, plan_denoise
        from ..model.registry import load_model

        model = load_model(source)
        if cancel.is_set():
            return JobOutcome(cancelled=True)
        plan = plan_denoise(image, model, axes=settings.axes, options=settings.options)
        yield Progress(0, 0, "denoising")
        result = yield from iterate_progress(
            lambda progress: denoise(image, model, plan=plan, progress=progress, cancel=cancel),
            message="denoising",
            cancel=cancel,
        )
    except DenoiseCancelled:
        return JobOutcome(cancelled=True)
    except Exception as exc:  # shown to the user by the widget; the widget stays usable
        logger.debug("denoise job failed", exc_info=True)
        return JobOutcome(error=exc)
    if cancel.is_set():  # pressed Cancel as the last tile finished: still add nothing
        return JobOutcome(cancelled=True)
    info = {"model": model, "seconds": time.perf_counter() - started}
    info.update(intensity_ranges=plan.intensity_ranges(), warnings=plan.warnings)
    return JobOutcome(result, info=info)


def with_residual(job, image, wanted: bool) -> Generator[Progress, None, JobOutcome]:
    """Run ``job``; then, still in the worker thread, compute the residual and its contrast limits."""
    outcome = yield from job
    if wanted and outcome.ok:
        yield Progress(0, 0, "computing the residual")
        values = _layers.residual(image, outcome.value)
        outcome.info["residual"] = (values, _layers.residual_limits(values))
    return outcome


def install_job(path: str, name: str, overwrite: bool) -> Generator[Progress, None, JobOutcome]:
    """Worker: validate a checkpoint and install it in the model cache as ``name``."""
    try:
        yield Progress(0, 0, f"checking and installing {os.path.basename(path)}")
        from ..model.registry import install_model

        target = install_model(path, name, overwrite=overwrite)
    except Exception as exc:  # shown by the widget
        logger.debug("install failed", exc_info=True)
        return JobOutcome(error=exc)
    return JobOutcome(target, info={"name": name})


def download_job(name: str, cancel: threading.Event) -> Generator[Progress, None, JobOutcome]:
    """Worker: download the registry model ``name`` (mirrors, direct links, the authors' release) and install it.

    Progress is in MB; Cancel stops the transfer and leaves nothing behind (``download_model``).
    """
    try:
        yield Progress(0, 0, f"looking for {name}")
        from ..model.download import download_model

        def call(progress):
            return download_model(name, progress=lambda done, total: progress(done >> 20, total >> 20), cancel=cancel)

        target = yield from iterate_progress(call, message=f"downloading {name}", cancel=cancel)
    except DenoiseCancelled:
        return JobOutcome(cancelled=True)
    except Exception as exc:  # shown by the widget: offline, a hash mismatch, a bad file...
        logger.debug("download failed", exc_info=True)
        return JobOutcome(error=exc)
    if cancel.is_set():
        return JobOutcome(cancelled=True)
    return JobOutcome(target, info={"name": name})


class DenoiseWidget(ScrollingDockMixin, JobWidgetMixin, QWidget):
    """Dock widget: denoise an image layer with a denoising model.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._init_job_state()
        self._model_cache: tuple[Any, Any] | None = None  # (cache key, loaded DenoisingModel)
        self._axes_layer = None
        self._axes_ok = False
        self._has_planes = False
        self._status_layers: set[str] = set()  # result layers the status line names
        self._batch: list = []  # layers still to denoise in a "Denoise selected" run
        self._batch_report: dict | None = None
        self._loaded_info: dict[str, str] = {}  # source -> description learnt when it was loaded
        self._tidy_steps: list = []  # after a run: select the result, remove superseded previews
        #: Lazy layers larger than this (bytes) are denoised into a zarr store and opened lazily.
        self.large_layer_bytes = _large.LARGE_LAYER_BYTES
        self.layer_queue = LayerQueue(napari_viewer, self)
        self._build()
        self._set_idle_bar()
        layers = napari_viewer.layers
        layers.events.removed.connect(self._on_layer_removed)
        layers.selection.events.changed.connect(self._on_selection_changed)
        napari_viewer.dims.events.ndisplay.connect(self._on_ndisplay_changed)
        self._on_layer_changed(self.layer_combo.layer())
        self._on_model_changed(self.model_combo.source())
        self._on_selection_changed()

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        content = scrolling_content(self)
        self.layer_combo = ImageLayerCombo(
            self.viewer, content, exclude_suffixes=OUTPUT_SUFFIXES, hide=_layers.is_compare_layer
        )
        self.model_combo = ModelCombo(content)
        self.refresh_models = QToolButton(content)
        self.refresh_models.setText("↻")
        self.refresh_models.setToolTip("Re-read the model cache (after installing a model)")
        self.model_state = ModelStatePanel(content)
        self.download_button = QPushButton("Download", content)
        self.download_button.setToolTip(
            "Download this model from its release (or a mirror you configured) and install it; Cancel stops it"
        )
        self.add_model_action(self.download_button)
        self.download_button.clicked.connect(lambda: self.download_model())
        self.axes_edit = QLineEdit(content)
        self.axes_edit.setToolTip(
            "One letter per array axis: Y and X (required), C or S for channels/colour,"
            " any other letter (Z, T...) for axes denoised plane by plane."
        )
        self.axes_note = QLabel(content)
        self.axes_note.setWordWrap(True)
        self.axes_note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.residual_check = QCheckBox("Add residual layer (input − result)", content)
        self.residual_check.setToolTip(
            "Also add <input>_residual = input − denoised: what the denoiser removed. It goes under the"
            " result, hidden; tick its eye in the layer list to see it (mid-grey = nothing removed)."
        )

        options = InferenceOptionsPanel(content, "Advanced", "whole plane")
        self.advanced_toggle, self.advanced = options.toggle, options.panel
        self.tile_size, self.overlap = options.tile_size, options.overlap
        self.tta = options.tta
        self.device, self.precision = options.device, options.precision
        self._options = options
        self.large_output = QLineEdit(self.advanced)
        self.large_output.setPlaceholderText("a temporary folder")
        self.large_output.setToolTip(
            f"Lazy (dask/zarr) layers over {_large.LARGE_LAYER_BYTES / 1024**3:g} GiB are denoised block by block"
            " into <folder>/<layer>_denoised.zarr and opened lazily. In a folder you choose, an interrupted run"
            " resumes where it stopped."
        )
        options.form.addRow("Large layers to", self.large_output)

        self.run_button = QPushButton("Denoise", content)
        self.run_button.setToolTip("Denoise the whole layer into <layer>_denoised")
        self.preview_button = QPushButton("Preview", content)
        self.preview_button.setToolTip(
            "Denoise only what is on screen (the visible part of the plane shown) into <layer>_denoised_preview"
        )
        self.cancel_button = QPushButton("Cancel", content)
        self.cancel_button.setEnabled(False)
        self.selected_button = QPushButton("Denoise the selected layers", content)
        self.selected_button.setToolTip(
            "Denoise every image layer selected in the layer list, each into its own result"
        )
        self.progress_bar = QProgressBar(content)
        self.progress_bar.setTextVisible(True)
        self.status = QLabel("", content)
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.before_after = BeforeAfterRow(self.viewer, content)

        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.refresh_models)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Image", self.layer_combo)
        form.addRow("Model", model_row)
        form.addRow(self.model_state)
        form.addRow("Axes", self.axes_edit)
        form.addRow(self.axes_note)
        form.addRow(self.residual_check)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        self.ct_controls = CTControls(self)  # units, planes, scale and range, CT windows (_ct_controls.py)
        layout.addWidget(self.ct_controls)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.selected_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addWidget(self.before_after)
        layout.addStretch(1)
        self.setMinimumWidth(220)

        self.layer_combo.layer_changed.connect(self._on_layer_changed)
        self.model_combo.source_changed.connect(self._on_model_changed)
        self.model_combo.install_requested.connect(self.choose_checkpoint_to_install)
        self.model_state.install_clicked.connect(self.choose_checkpoint_to_install)
        self.model_state.load_clicked.connect(self.model_combo.choose_checkpoint_file)
        self.refresh_models.clicked.connect(self._on_refresh_models)
        self.axes_edit.textEdited.connect(self._on_axes_edited)
        self.run_button.clicked.connect(lambda: self.run())
        self.preview_button.clicked.connect(lambda: self.run(preview=True))
        self.selected_button.clicked.connect(lambda: self.run_selected())
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def is_busy(self) -> bool:
        """A job runs, its result layers are still being added, or a "Denoise selected" run goes on."""
        from ._view_session import ViewSession

        grid = ViewSession.for_viewer(self.viewer).busy
        tidying = bool(self._tidy_steps)
        return self.is_running or self.layer_queue.busy or self._batch_report is not None or grid or tidying

    def add_model_action(self, button: QPushButton) -> None:
        """Add a button to the no-model row (next to Install/Load checkpoint…), e.g. a model download."""
        self.model_state.add_action_button(button)

    # ----------------------------------------------------------------- state
    def settings(self, layer=None) -> DenoiseSettings:
        """The current options; raises ValueError naming the problem if the axes do not fit the layer.

        For a ``layer`` other than the one picked above (a "Denoise selected" run),
        its axes are guessed from the layer.
        """
        if layer is not None and layer is not self.layer_combo.layer():
            return DenoiseSettings(_layers.layer_axes(layer), self._options.options())
        axes = self._validate_axes()
        return DenoiseSettings(axes, self._options.options(**self.ct_controls.option_fields()))

    def set_checkpoint(self, path: str | os.PathLike) -> None:
        """Select a checkpoint file as the model (what "Load checkpoint…" does after its dialog)."""
        self.model_combo.add_checkpoint(path)

    def _on_refresh_models(self) -> None:
        self.model_combo.refresh()
        self._on_model_changed(self.model_combo.source())

    def _on_model_changed(self, source=None) -> None:
        summary = self.model_combo.summary()
        if summary is not None and summary.loadable and summary.source in self._loaded_info:
            from dataclasses import replace

            summary = replace(summary, description=self._loaded_info[summary.source])
        self.model_state.show_summary(summary, any_loadable=self.model_combo.any_loadable())
        self.download_button.setVisible(summary is not None and not summary.loadable and _downloadable(summary.name))
        self._update_buttons()

    def _model_ready(self) -> bool:
        summary = self.model_combo.summary()
        return summary is not None and summary.loadable

    def _on_layer_changed(self, layer) -> None:
        self._axes_layer = layer
        self._update_before_after()
        if layer is None:
            self.axes_edit.setText("")
            self._axes_ok = False
            self._set_axes_note("Add an image layer to denoise it.")
            self._update_buttons()
            return
        try:
            axes = _layers.layer_axes(layer)
        except ValueError as exc:
            self.axes_edit.setText("")
            self._axes_ok = False
            self._set_axes_note(str(exc), error=True)
            self._update_buttons()
            return
        self.axes_edit.setText(axes)
        try:
            self._validate_axes()
        except ValueError:
            pass  # shown in the note under the axes field

    def _on_axes_edited(self, _text: str) -> None:
        try:
            self._validate_axes()
        except ValueError:
            pass  # shown in the note under the axes field

    def _set_axes_note(self, text: str, *, error: bool = False) -> None:
        self.axes_note.setText(text)
        self.axes_note.setStyleSheet(ERROR_STYLE if error else NOTE_STYLE)

    def _validate_axes(self) -> str:
        layer = self.layer_combo.layer()
        text = self.axes_edit.text().strip().upper()
        if layer is None:
            self._axes_ok = False
            self._update_buttons()
            raise ValueError("no image layer is selected; add or pick one")
        shape = tuple(int(s) for s in _layers.layer_array(layer).shape)
        try:
            layout = parse_axes(text, shape)
        except (ValueError, TypeError) as exc:
            self._set_axes_note(str(exc), error=True)
            self._axes_ok = False
            self._has_planes = False
            self._update_buttons()
            raise ValueError(f"axes: {exc}") from None
        parts = [f"shape {shape}"]
        if layout.planes:
            planes = 1
            for axis in layout.planes:
                planes *= shape[axis]
            letters = "".join(layout.axes[a] for a in layout.planes)
            parts.append(f"{planes} plane{'s' if planes != 1 else ''} ({letters})")
        if layout.channel is not None:
            parts.append(f"{shape[layout.channel]} channels ({layout.axes[layout.channel]})")
        source = "edited" if text != _layers.layer_axes(layer) else "guessed from the layer"
        self._set_axes_note(f"{source}: " + ", ".join(parts))
        self._axes_ok = True
        self._has_planes = bool(layout.planes)
        self._update_buttons()
        return text

    def _selected_inputs(self) -> list:
        """Image layers selected in the layer list that this widget can take as inputs, in list order."""
        selected = self.viewer.layers.selection
        return [layer for layer in self._inputs() if layer in selected]

    def _inputs(self) -> list:
        return [layer for layer in self.layer_combo.image_layers() if not layer.name.endswith(OUTPUT_SUFFIXES)]

    def _update_buttons(self) -> None:
        if not hasattr(self, "run_button"):
            return
        running = self.is_running
        has_layer = self.layer_combo.layer() is not None
        model = self._model_ready()
        reason = ""
        if not has_layer:
            reason = "Add or pick an image layer first"
        elif not model:
            reason = "Install or load a model first (see the note under Model)"
        elif not self._axes_ok:
            reason = "Fix the axes first (see the note under Axes)"
        ready = has_layer and model and self._axes_ok and not running
        self.run_button.setEnabled(ready)
        self.run_button.setToolTip(reason or "Denoise the whole layer into <layer>_denoised")
        in_3d = self.viewer.dims.ndisplay == 3
        self.preview_button.setEnabled(ready and not in_3d)
        self.preview_button.setToolTip(
            "The 3D view shows no single plane: switch to 2D view to preview"
            if in_3d and ready
            else reason or "Denoise only what is on screen (the visible part of the plane shown)"
        )
        self.cancel_button.setEnabled(running)
        selected = self._selected_inputs()
        self.selected_button.setVisible(len(selected) >= 2)
        self.selected_button.setText(f"Denoise the {len(selected)} selected layers")
        self.selected_button.setEnabled(model and not running)
        for widget in (self.layer_combo, self.model_combo, self.axes_edit, self.refresh_models, self.advanced,
                       self.ct_controls):  # fmt: skip
            widget.setEnabled(not running)
        self.model_state.setEnabled(not running)

    def _on_selection_changed(self, *_) -> None:
        try:
            self._update_buttons()
        except RuntimeError:  # the widget is gone
            pass

    def _on_ndisplay_changed(self, *_) -> None:
        try:
            self._update_buttons()
        except RuntimeError:
            pass

    def _on_layer_removed(self, event) -> None:
        layer = getattr(event, "value", None)
        try:
            if layer is not None and layer.name in self._status_layers:
                self._status_layers.discard(layer.name)
                if not self.is_running:
                    self._set_status(f"'{layer.name}' was deleted.")
            self._update_before_after()
        except RuntimeError:  # the widget is gone
            pass

    def _update_before_after(self) -> None:
        layer = self.layer_combo.layer()
        result = None
        if layer is not None:
            name = layer.name + DENOISED_SUFFIX
            result = self.viewer.layers[name] if name in self.viewer.layers else None
        self.before_after.set_pair(layer if result is not None else None, result)

    # ----------------------------------------------------------------- models
    def choose_checkpoint_to_install(self) -> None:
        """The "Install checkpoint…" action: pick a file, name it, confirm a replacement; then install it."""
        from ..model.registry import REGISTRY, installed_path
        from ..model.sources import validate_model_name

        path, _ = QFileDialog.getOpenFileName(self, "Install a denoising checkpoint", "", CHECKPOINT_FILTER)
        if not path:
            return
        summary = self.model_combo.summary()
        if summary is not None and not summary.loadable and summary.name in REGISTRY:
            default = summary.name  # the registry model that is missing
        else:
            default = "".join(
                c if c.isalnum() or c in "-_" else "_" for c in os.path.splitext(os.path.basename(path))[0]
            )
        name, ok = QInputDialog.getText(self, "Install checkpoint", "Name in the model cache:", text=default)
        name = name.strip()
        if not ok or not name:
            return
        try:
            validate_model_name(name)
        except ValueError as exc:
            self._show_error(str(exc))
            return
        overwrite = False
        if installed_path(name).exists():
            answer = QMessageBox.question(
                self, "Replace the installed model?", f"A model named '{name}' is installed already. Replace it?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            overwrite = True
        self.install_checkpoint(path, name, overwrite=overwrite)

    def install_checkpoint(self, path, name: str, *, overwrite: bool = False):
        """Validate ``path`` and install it as ``name`` in a worker; then list and select it.

        Returns the worker, or None when a job is running already.
        """
        if self.is_running:
            return None

        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        self._start_progress(f"Installing {os.path.basename(os.fspath(path))}", unit="steps")
        worker = job_worker(install_job, os.fspath(path), name, overwrite)
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(if_alive(self, self._on_installed))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def download_model(self, name: str | None = None):
        """Download and install the selected registry model (or ``name``) in a worker; then select it.

        Returns the worker, or None when nothing was started (a job is running, or no name).
        """
        if self.is_running:
            return None
        summary = self.model_combo.summary()
        name = name or (summary.name if summary is not None else None)
        if not name:
            self._show_error("pick a model to download")
            return None

        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        self._start_progress(f"Downloading {name}", unit="MB")
        worker = job_worker(download_job, name, self._cancel)
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(if_alive(self, self._on_installed))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def _on_installed(self, outcome: JobOutcome) -> None:
        self._stop_progress_text()
        if outcome.cancelled:
            self._set_status("Cancelled; nothing was installed.")
            return
        if outcome.error is not None:
            self._show_error(f"Not installed: {outcome.error}")
            return
        name = outcome.info["name"]
        self.model_combo.refresh()
        self.model_combo.set_source(name)
        self._model_cache = None
        self._on_model_changed(name)
        self._set_status(f"Installed '{name}' in the model cache ({outcome.value}); it is selected.")

    # ----------------------------------------------------------------- running
    def _model_source(self):
        """The loaded model when the selection has not changed since it was loaded, else the name/path."""
        source = self.model_combo.source()
        if source is None or not self._model_ready():
            raise ValueError(f"install or load a model first: {self.model_combo.missing_hint()}")
        key = (source, _mtime(source))
        if self._model_cache is not None and self._model_cache[0] == key:
            return self._model_cache[1], key
        return source, key

    def run_selected(self):
        """Denoise every selected image layer, one after another, each into its own result."""
        if self.is_running:
            return None
        layers = self._selected_inputs()
        if not layers:
            self._show_error("select image layers in the layer list first")
            return None
        self._batch = layers[1:]
        self._batch_report = {"total": len(layers), "done": [], "failed": []}
        return self.run(layer=layers[0])

    def run(self, *, preview: bool = False, layer=None):
        """Start denoising the selected layer (or only what is on screen when ``preview``).

        Returns the napari worker, or None when nothing was started (the reason is
        shown in the widget).
        """
        if self.is_running:
            return None
        layer = layer if layer is not None else self.layer_combo.layer()
        try:
            if layer is None:
                raise ValueError("no image layer is selected; add or pick one")
            settings = self.settings(layer)
            source, key = self._model_source()
            image = _layers.layer_array(layer)
            offset = None
            store = None
            if preview:
                region, offset = _layers.visible_region(layer, self.viewer, settings.axes)
                image = image[region]
                settings = self.ct_controls.preview_settings(settings)  # one plane: XY only
            elif _large.goes_to_zarr(image, self.large_layer_bytes):
                store = _large.output_store(layer.name, self.large_output.text().strip() or None)
        except ValueError as exc:
            self._show_error(str(exc))
            self._end_batch()
            return None

        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        what = f"the visible part of {layer.name}" if preview else layer.name
        if self._batch_report is not None:
            position = len(self._batch_report["done"]) + len(self._batch_report["failed"]) + 1
            what = f"{layer.name} (layer {position} of {self._batch_report['total']})"
        self._start_progress(f"Denoising {what}", unit="blocks" if store is not None else "tiles")
        if store is not None:
            job = _large.denoise_to_zarr_job(image, source, settings, self._cancel, *store)
        else:
            job = denoise_job(image, source, settings, self._cancel)
        residual = self.residual_check.isChecked()
        worker = job_worker(with_residual, job, image, residual)
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(
            if_alive(self, lambda outcome: self._on_returned(outcome, layer, settings, key, offset, preview))
        )
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def _on_returned(self, outcome: JobOutcome, layer, settings: DenoiseSettings, key, offset, preview) -> None:
        self._stop_progress_text()
        if outcome.cancelled:
            kept = outcome.info.get("output") if not outcome.info.get("temporary", True) else None
            resume = f" Finished blocks stay in {kept}; Denoise resumes them." if kept else ""
            self._batch = []
            self._set_status("Cancelled; nothing was added." + resume)
            self._end_batch()
            return
        if outcome.error is not None:
            self._on_job_error(outcome.error, layer, key)
            return
        self._model_cache = (key, outcome.info["model"])
        self._learn_model(key[0], outcome.info["model"])
        try:
            specs = self._result_specs(outcome, layer, settings, offset, preview)
        except Exception as exc:  # e.g. napari refusing the layer's geometry: report it, stay usable
            logger.debug("preparing the result layers failed", exc_info=True)
            self._show_error(f"Denoising finished but the result could not be added to the viewer: {exc}")
            self._continue_batch(layer, failed=True)
            return
        self._set_status("Adding the result to the viewer…")
        self.layer_queue.submit(
            specs,
            done=if_alive(self, lambda added: self._on_results_added(added, outcome, layer, preview)),
            failed=if_alive(self, lambda exc: self._on_add_failed(exc, layer)),
        )

    def _on_job_error(self, error, layer, key) -> None:
        source = key[0]
        if isinstance(error, ModelNotInstalledError):
            self.model_combo.refresh()
            self._on_model_changed()
            self._show_error(f"The model is not installed: {error}")
        elif isinstance(error, CheckpointError) and source in self.model_combo._checkpoints:
            self.model_combo.remove_checkpoint(source)
            self._on_model_changed()
            self._show_error(
                f"Denoising failed: {error} — {os.path.basename(source)} was taken off the model list;"
                " load another checkpoint."
            )
        else:
            self._show_error(f"Denoising failed: {error}")
        self._continue_batch(layer, failed=True)

    def _on_add_failed(self, exc, layer) -> None:
        self._show_error(f"Denoising finished but the result could not be added to the viewer: {exc}")
        self._continue_batch(layer, failed=True)

    def _learn_model(self, source, model) -> None:
        """Remember what a loaded model says it was trained on (for files whose header said nothing)."""
        metadata = getattr(model, "metadata", {}) or {}
        parts = []
        if metadata.get("noise"):
            parts.append(f"Trained on {metadata['noise']}.")
        if metadata.get("description"):
            parts.append(" ".join(str(metadata["description"]).split()).partition(". ")[0].rstrip(".") + ".")
        summary = self.model_combo.summary(source)
        if parts and summary is not None and not summary.description.startswith("Trained on"):
            self._loaded_info[source] = " ".join(parts)
            if self.model_combo.source() == source:
                self._on_model_changed()

    def _result_specs(self, outcome: JobOutcome, layer, settings: DenoiseSettings, offset, preview) -> list:
        model = outcome.info["model"]
        seconds = outcome.info["seconds"]
        name = layer.name + (PREVIEW_SUFFIX if preview else DENOISED_SUFFIX)
        record = _layers.provenance(model.provenance(), settings.record(), layer.name, seconds)
        if preview:
            record["region"] = {str(axis): start for axis, start in (offset or {}).items()}
            record["region_shape"] = list(outcome.value.shape)
        geometry = _layers.geometry_kwargs(layer, offset=offset)
        look = _layers.display_kwargs(layer)
        if "output" in outcome.info:
            record["zarr_store"] = outcome.info["output"]
        if "intensity_ranges" in outcome.info:
            record["intensity_ranges"] = outcome.info["intensity_ranges"]
            self.ct_controls.show_result(outcome.info["intensity_ranges"], outcome.info.get("warnings", []))
        metadata = {**dict(layer.metadata), "clipdenoise": record}
        specs = [LayerSpec(name, outcome.value, {"metadata": metadata, **geometry, **look})]
        if "residual" in outcome.info:
            values, limits = outcome.info["residual"]
            residual_look = {
                **look,
                "contrast_limits": limits,
                "blending": "translucent",
                "rendering": "average",  # in 3D: zero-mean noise averages to grey instead of a white MIP
                "visible": False,  # under the result, hidden: the result stays what one sees
            }
            if not layer.rgb:
                residual_look["colormap"] = "gray"
            residual_name = layer.name + (RESIDUAL_PREVIEW_SUFFIX if preview else RESIDUAL_SUFFIX)
            residual_record = {**record, "residual": "input - denoised"}
            # the residual first, then the result on top of it: napari selects each new layer, so the result
            # ends up selected without a (costly) selection change of our own
            specs.insert(
                0,
                LayerSpec(
                    residual_name, values, {"metadata": {"clipdenoise": residual_record}, **geometry, **residual_look}
                ),
            )
            specs[-1].after = lambda added, below=residual_name: _move_below(self.viewer, below, added)
        return specs

    def _on_results_added(self, added, outcome: JobOutcome, layer, preview: bool) -> None:
        model = outcome.info["model"]
        seconds = outcome.info["seconds"]
        result = added[-1]
        self._status_layers = {added_layer.name for added_layer in added}
        stale = []
        if not preview:  # a full run supersedes this layer's previews
            stale = [layer.name + suffix for suffix in (PREVIEW_SUFFIX, RESIDUAL_PREVIEW_SUFFIX)]
            stale = [self.viewer.layers[name] for name in stale if name in self.viewer.layers]
        # the previews go one per turn (each removal rebuilds napari's scene)
        self._tidy_steps = [lambda old=old: self._remove(old) for old in stale]
        QTimer.singleShot(0, if_alive(self, self._next_tidy_step))
        message = f"Done in {seconds:.1f} s → layer '{result.name}' ({model.name})."
        if len(added) > 1:
            message += f" Residual '{added[0].name}' is under it, hidden: tick its eye to see what was removed."
        if self._batch_report is not None:
            self._batch_report["done"].append(result.name)
        self._set_status(message)
        self._update_before_after()
        self._continue_batch(layer)

    def _next_tidy_step(self) -> None:
        if self._tidy_steps:
            self._tidy_steps.pop(0)()
        if self._tidy_steps:
            QTimer.singleShot(0, if_alive(self, self._next_tidy_step))

    def _remove(self, layer) -> None:
        if layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    def _continue_batch(self, layer, *, failed: bool = False) -> None:
        report = self._batch_report
        if report is None:
            return
        if failed:
            report["failed"].append(layer.name)
        if self._batch:
            upcoming = self._batch.pop(0)
            QTimer.singleShot(0, if_alive(self, lambda: self._run_next(upcoming)))
            return
        self._end_batch()
        done, failures = report["done"], report["failed"]
        text = f"Denoised {len(done)} of {report['total']} layers: " + ", ".join(f"'{n}'" for n in done)
        if failures:
            text += ". Failed: " + ", ".join(f"'{n}'" for n in failures) + " (see the notifications)"
        self._status_layers = set(done)
        self._set_status(text + ".", error=bool(failures))

    def _run_next(self, layer) -> None:
        if self.is_running:  # the last job's worker has not finished yet: try again shortly
            QTimer.singleShot(20, if_alive(self, lambda: self._run_next(layer)))
            return
        if layer not in self.viewer.layers:
            self._continue_batch(layer, failed=True)
            return
        self.run(layer=layer)

    def _end_batch(self) -> None:
        self._batch = []
        self._batch_report = None

    def cancel(self) -> None:
        self._batch = []
        super().cancel()

    def _on_finished(self) -> None:
        if not self._finish_job():
            return
        self._update_buttons()


def _move_below(viewer, lower_name: str, upper) -> None:
    """Move the layer ``lower_name`` directly under ``upper`` in the layer list (if it is not already)."""
    layers = viewer.layers
    if lower_name not in layers or upper not in layers:
        return
    here, top = layers.index(lower_name), layers.index(upper)
    if here != top - 1:
        layers.move(here, top)  # "insert before": ends directly under ``upper`` from either side


def _mtime(source) -> int | None:
    """Modification time of the file behind ``source`` (a path or an installed name), to notice re-installs."""
    from ..model.sources import parse_model_source

    return parse_model_source(source).mtime()


def _downloadable(name: str | None) -> bool:
    """Whether ``name`` has a release or mirror to download it from (reads configuration only, no network)."""
    if not name:
        return False
    from ..model.download import downloadable_models

    try:
        return name in downloadable_models()
    except Exception:  # noqa: BLE001 - an unreadable mirror config: no button; the CLI reports the config error
        return False
