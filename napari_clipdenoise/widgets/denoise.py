"""The Denoise dock widget: pick a layer and a model, run in a worker thread, get ``<input>_denoised``.

Building the widget reads only the model cache folder; torch is imported and the
model loaded in the worker thread on the first Run, and kept for later runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import DenoiseCancelled, ModelNotInstalledError
from ..inference.axes import parse_axes
from ..inference.options import InferenceOptions
from ..jobs import JobOutcome, Progress, iterate_progress
from . import _large, _layers
from ._ct_controls import CTControls
from ._inference_options import InferenceOptionsPanel
from ._job import ERROR_STYLE, JobWidgetMixin
from ._layer_combo import ImageLayerCombo
from ._model_combo import ModelCombo
from ._worker import if_alive

logger = logging.getLogger(__name__)

DENOISED_SUFFIX = "_denoised"
PREVIEW_SUFFIX = "_denoised_preview"
RESIDUAL_SUFFIX = "_residual"
RESIDUAL_PREVIEW_SUFFIX = "_residual_preview"
OUTPUT_SUFFIXES = (DENOISED_SUFFIX, PREVIEW_SUFFIX, RESIDUAL_SUFFIX, RESIDUAL_PREVIEW_SUFFIX)
HINT_STYLE = "color: #ffb347;"


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
    started = time.perf_counter()
    try:
        yield Progress(0, 0, "loading model")
        from ..inference.pipeline import denoise, plan_denoise
        from ..model.registry import load_model

        model = load_model(source)
        if cancel.is_set():
            return JobOutcome(cancelled=True)
        plan = plan_denoise(image, model, axes=settings.axes, options=settings.options)
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


class DenoiseWidget(JobWidgetMixin, QWidget):
    """Dock widget: denoise an image layer with a CLIP denoiser.

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
        #: Lazy layers larger than this (bytes) are denoised into a zarr store and opened lazily.
        self.large_layer_bytes = _large.LARGE_LAYER_BYTES
        self._build()
        self._on_layer_changed(self.layer_combo.layer())
        self._on_model_changed(self.model_combo.source())

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        self.layer_combo = ImageLayerCombo(self.viewer, self, exclude_suffixes=OUTPUT_SUFFIXES)
        self.model_combo = ModelCombo(self)
        self.refresh_models = QToolButton(self)
        self.refresh_models.setText("↻")
        self.refresh_models.setToolTip("Re-read the model cache (after installing a model)")
        self.model_hint = QLabel(self)
        self.model_hint.setWordWrap(True)
        self.model_hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_hint.setStyleSheet(HINT_STYLE)
        self.axes_edit = QLineEdit(self)
        self.axes_edit.setToolTip(
            "One letter per array axis: Y and X (required), C or S for channels/colour,"
            " any other letter (Z, T...) for axes denoised plane by plane."
        )
        self.axes_note = QLabel(self)
        self.axes_note.setWordWrap(True)
        self.residual_check = QCheckBox("Add residual layer (input − denoised)", self)

        options = InferenceOptionsPanel(self, "Advanced", "whole plane")
        self.advanced_toggle, self.advanced = options.toggle, options.panel
        self.tile_size, self.overlap = options.tile_size, options.overlap
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

        self.run_button = QPushButton("Denoise", self)
        self.run_button.setToolTip("Denoise the whole layer into <layer>_denoised")
        self.preview_button = QPushButton("Preview slice", self)
        self.preview_button.setToolTip("Denoise only the plane shown now (stacks)")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.refresh_models)
        form = QFormLayout()
        form.addRow("Image", self.layer_combo)
        form.addRow("Model", model_row)
        form.addRow(self.model_hint)
        form.addRow("Axes", self.axes_edit)
        form.addRow(self.axes_note)
        form.addRow(self.residual_check)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        self.ct_controls = CTControls(self)  # units, planes, scale and range, CT windows (_ct_controls.py)
        layout.addWidget(self.ct_controls)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.layer_combo.layer_changed.connect(self._on_layer_changed)
        self.model_combo.source_changed.connect(self._on_model_changed)
        self.refresh_models.clicked.connect(self._on_refresh_models)
        self.axes_edit.textEdited.connect(self._on_axes_edited)
        self.run_button.clicked.connect(lambda: self.run())
        self.preview_button.clicked.connect(lambda: self.run(preview=True))
        self.cancel_button.clicked.connect(self.cancel)

    # ----------------------------------------------------------------- state
    def settings(self) -> DenoiseSettings:
        """The current options; raises ValueError naming the problem if the axes do not fit the layer."""
        axes = self._validate_axes()
        return DenoiseSettings(axes, self._options.options(**self.ct_controls.option_fields()))

    def set_checkpoint(self, path: str | os.PathLike) -> None:
        """Select a checkpoint file as the model (what "Load checkpoint…" does after its dialog)."""
        self.model_combo.add_checkpoint(path)

    def _on_refresh_models(self) -> None:
        self.model_combo.refresh()
        self._on_model_changed(self.model_combo.source())

    def _on_model_changed(self, source) -> None:
        hint = self.model_combo.missing_hint()
        self.model_hint.setText(hint)
        self.model_hint.setVisible(bool(hint))

    def _on_layer_changed(self, layer) -> None:
        self._axes_layer = layer
        if layer is None:
            self.axes_edit.setText("")
            self.axes_note.setText("Add an image layer to denoise it.")
            self._update_buttons()
            return
        try:
            axes = _layers.layer_axes(layer)
        except ValueError as exc:
            self.axes_edit.setText("")
            self._set_axes_note(str(exc), error=True)
            self._update_buttons()
            return
        self.axes_edit.setText(axes)
        self._validate_axes()

    def _on_axes_edited(self, _text: str) -> None:
        try:
            self._validate_axes()
        except ValueError:
            pass  # shown in the note under the axes field

    def _set_axes_note(self, text: str, *, error: bool = False) -> None:
        self.axes_note.setText(text)
        self.axes_note.setStyleSheet(ERROR_STYLE if error else "color: gray;")

    def _validate_axes(self) -> str:
        layer = self.layer_combo.layer()
        text = self.axes_edit.text().strip().upper()
        if layer is None:
            raise ValueError("no image layer is selected; add or pick one")
        shape = tuple(int(s) for s in _layers.layer_array(layer).shape)
        try:
            layout = parse_axes(text, shape)
        except (ValueError, TypeError) as exc:
            self._set_axes_note(str(exc), error=True)
            self._update_buttons(planes=False)
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
        self._update_buttons(planes=bool(layout.planes))
        return text

    def _update_buttons(self, *, planes: bool | None = None) -> None:
        running = self.is_running
        has_layer = self.layer_combo.layer() is not None
        self.run_button.setEnabled(has_layer and not running)
        if planes is not None:
            self._has_planes = planes
        self.preview_button.setEnabled(has_layer and not running and getattr(self, "_has_planes", False))
        self.cancel_button.setEnabled(running)
        for widget in (self.layer_combo, self.model_combo, self.axes_edit, self.refresh_models, self.advanced,
                       self.ct_controls):  # fmt: skip
            widget.setEnabled(not running)

    # ----------------------------------------------------------------- running
    def _model_source(self):
        """The loaded model when the selection has not changed since it was loaded, else the name/path."""
        source = self.model_combo.source()
        if source is None:
            raise ValueError("pick a model (or load a checkpoint file)")
        key = (source, _mtime(source))
        if self._model_cache is not None and self._model_cache[0] == key:
            return self._model_cache[1], key
        return source, key

    def run(self, *, preview: bool = False):
        """Start denoising the selected layer (or only the plane on screen when ``preview``).

        Returns the napari worker, or None when nothing was started (the reason is
        shown in the widget).
        """
        if self.is_running:
            return None
        layer = self.layer_combo.layer()
        try:
            if layer is None:
                raise ValueError("no image layer is selected; add or pick one")
            settings = self.settings()
            source, key = self._model_source()
            image = _layers.layer_array(layer)
            offset = None
            store = None
            if preview:
                region, offset = _layers.preview_region(layer, self.viewer, settings.axes)
                if not offset:
                    raise ValueError("Preview slice is for stacks: this layer has only one plane; use Denoise")
                image = image[region]
                settings = self.ct_controls.preview_settings(settings)  # one plane: XY only
            elif _large.goes_to_zarr(image, self.large_layer_bytes):
                store = _large.output_store(layer.name, self.large_output.text().strip() or None)
        except ValueError as exc:
            self._show_error(str(exc))
            return None

        from napari.qt.threading import create_worker
        from napari.utils import progress

        self._cancel = threading.Event()
        self._cancel_holder[0] = self._cancel
        what = f"plane {tuple(offset.values())} of {layer.name}" if preview else layer.name
        self._pbar = progress(total=0, desc=f"Denoising {what}")
        self.progress_bar.setRange(0, 0)
        self._set_status(f"Denoising {what}…")
        self.model_hint.setVisible(bool(self.model_combo.missing_hint()))
        if store is not None:
            self._set_status(f"Denoising {what} into {store[0]} (too big for memory)…")
            worker = create_worker(
                _large.denoise_to_zarr_job, image, source, settings, self._cancel, *store, _start_thread=False
            )
        else:
            worker = create_worker(denoise_job, image, source, settings, self._cancel, _start_thread=False)
        worker.yielded.connect(if_alive(self, self._on_progress))
        worker.returned.connect(
            if_alive(self, lambda outcome: self._on_returned(outcome, layer, image, settings, key, offset))
        )
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return worker

    def _on_progress(self, report: Progress) -> None:
        if report.total <= 0:
            self.progress_bar.setRange(0, 0)
            if self._pbar is not None:
                self._pbar.set_description(f"{self._pbar.desc.split(':')[0]}: {report.message}")
            return
        self.progress_bar.setRange(0, report.total)
        self.progress_bar.setValue(report.done)
        self.progress_bar.setFormat("%v / %m blocks" if "blocks" in report.message else "%v / %m tiles")
        if self._pbar is not None:
            if self._pbar.total != report.total:
                self._pbar.total = report.total
            if report.done > self._pbar.n:
                self._pbar.update(report.done - self._pbar.n)

    def _on_returned(self, outcome: JobOutcome, layer, image, settings: DenoiseSettings, key, offset) -> None:
        if outcome.cancelled:
            kept = outcome.info.get("output") if not outcome.info.get("temporary", True) else None
            resume = f" Finished blocks stay in {kept}; Denoise resumes them." if kept else ""
            self._set_status("Cancelled; nothing was added." + resume)
            return
        if outcome.error is not None:
            if isinstance(outcome.error, ModelNotInstalledError):
                self.model_hint.setText(str(outcome.error))
                self.model_hint.setVisible(True)
                self._set_status("The model is not installed; see the note above.", error=True)
            else:
                self._show_error(f"Denoising failed: {outcome.error}")
            return
        self._model_cache = (key, outcome.info["model"])
        try:
            self._add_results(outcome, layer, image, settings, offset)
        except Exception as exc:  # e.g. napari refusing the layer's geometry: report it, stay usable
            logger.debug("adding the result layers failed", exc_info=True)
            self._show_error(f"Denoising finished but the result could not be added to the viewer: {exc}")

    def _add_results(self, outcome: JobOutcome, layer, image, settings: DenoiseSettings, offset) -> None:
        model = outcome.info["model"]
        seconds = outcome.info["seconds"]
        name = layer.name + (PREVIEW_SUFFIX if offset else DENOISED_SUFFIX)
        record = _layers.provenance(model.provenance(), settings.record(), layer.name, seconds)
        if offset:
            record["plane"] = {str(axis): index for axis, index in offset.items()}
        geometry = _layers.geometry_kwargs(layer, offset=offset)
        look = _layers.display_kwargs(layer)
        if "output" in outcome.info:
            record["zarr_store"] = outcome.info["output"]
        if "intensity_ranges" in outcome.info:
            record["intensity_ranges"] = outcome.info["intensity_ranges"]
            self.ct_controls.show_result(outcome.info["intensity_ranges"], outcome.info.get("warnings", []))
        metadata = {**dict(layer.metadata), "clipdenoise": record}
        _layers.add_or_update_image(self.viewer, name, outcome.value, metadata=metadata, **geometry, **look)
        if self.residual_check.isChecked():
            values = _layers.residual(image, outcome.value)
            look = {**look, "contrast_limits": _layers.residual_limits(values), "blending": "translucent"}
            if not layer.rgb:
                look["colormap"] = "gray"
            _layers.add_or_update_image(
                self.viewer,
                layer.name + (RESIDUAL_PREVIEW_SUFFIX if offset else RESIDUAL_SUFFIX),
                values,
                metadata={"clipdenoise": {**record, "residual": "input - denoised"}},
                **geometry,
                **look,
            )
        self.viewer.layers.selection.active = self.viewer.layers[name]
        self._set_status(f"Done in {seconds:.1f} s → layer '{name}' ({model.name}).")

    def _on_finished(self) -> None:
        if not self._finish_job():
            return
        self.progress_bar.setFormat("%p%")
        self._update_buttons()


def _mtime(source) -> int | None:
    """Modification time of the file behind ``source`` (a path or an installed name), to notice re-installs."""
    from ..model.sources import parse_model_source

    return parse_model_source(source).mtime()
