"""A combo box of denoising models: every registry, bundled and installed model, and checkpoint files.

The list comes from the model core (``model.summary.available_models`` and
``describe_model``), so a newly registered or bundled model appears without any
change here. Listing only looks at the cache folder and at file headers; it
never imports torch or loads weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog

from ..model.summary import ModelSummary, available_models, describe_model

LOAD_CHECKPOINT = "Load checkpoint…"
INSTALL_CHECKPOINT = "Install checkpoint…"
CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.pth *.pt);;All files (*)"
#: Item data of the two action entries (they are not models).
_LOAD, _INSTALL = "\0load", "\0install"


class _ModelCache(QObject):
    changed = Signal()


_CACHE_SIGNAL: _ModelCache | None = None


def model_cache_signal() -> _ModelCache:
    """The application-wide ``changed`` signal: a model was installed or removed (e.g. by the Adapt widget)."""
    global _CACHE_SIGNAL
    if _CACHE_SIGNAL is None:
        _CACHE_SIGNAL = _ModelCache()
    return _CACHE_SIGNAL


def notify_models_changed() -> None:
    """Tell every model list of the application to re-read the cache folder."""
    model_cache_signal().changed.emit()


class ModelCombo(QComboBox):
    """Model picker. ``source()`` is a model name or a checkpoint path for ``load_model`` (None for nothing).

    Signals
    -------
    source_changed(object)
        A model was selected.
    install_requested()
        "Install checkpoint…" was picked (the owner opens its dialogs).
    """

    source_changed = Signal(object)
    install_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        self._previous = 0
        self._checkpoints: list[str] = []
        self._summaries: dict[tuple, ModelSummary] = {}
        self.refresh()
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(self._on_index_changed)
        model_cache_signal().changed.connect(self._on_cache_changed)

    def _on_cache_changed(self) -> None:
        try:
            self.refresh()
        except RuntimeError:  # the Qt object is gone
            pass

    # ----------------------------------------------------------------- contents
    def refresh(self) -> None:
        """Re-read the cache folder (e.g. after ``clipdenoise models import``), keeping the selection."""
        current = self.source()
        self._summaries.clear()
        self.blockSignals(True)
        self.clear()
        for name in available_models():
            summary = self.summary(name)
            # "(missing)": short enough for a laptop's dock; the note under the picker says what to do
            self.addItem(name if summary.loadable else f"{name} (missing)", name)
            self.setItemData(self.count() - 1, _tooltip(summary), Qt.ItemDataRole.ToolTipRole)
        for path in self._checkpoints:
            self.addItem(Path(path).name, path)
            self.setItemData(self.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        self.addItem(LOAD_CHECKPOINT, _LOAD)
        self.setItemData(self.count() - 1, "Use a checkpoint file for this session", Qt.ItemDataRole.ToolTipRole)
        self.addItem(INSTALL_CHECKPOINT, _INSTALL)
        self.setItemData(
            self.count() - 1,
            "Validate a checkpoint file and install it in the model cache under a name",
            Qt.ItemDataRole.ToolTipRole,
        )
        # default: the current choice, else the first loadable model, else the first entry
        index = self.findData(current) if current is not None else -1
        if index < 0:
            index = next((i for i in range(self.count()) if self._loadable_at(i)), 0)
        self.setCurrentIndex(index)
        self._previous = index
        self.blockSignals(False)

    def sizeHint(self):  # noqa: N802 (Qt API)
        """Wide enough for the longest entry (the minimum stays small, so narrow docks still fit)."""
        hint = super().sizeHint()
        metrics = self.fontMetrics()
        widest = max((metrics.horizontalAdvance(self.itemText(i)) for i in range(self.count())), default=0)
        hint.setWidth(max(hint.width(), widest + 48))
        return hint

    def _loadable_at(self, index: int) -> bool:
        data = self.itemData(index)
        return _is_model(data) and self.summary(data).loadable

    def sources(self) -> list[str]:
        """Every model listed (names and checkpoint paths)."""
        return [self.itemData(i) for i in range(self.count()) if _is_model(self.itemData(i))]

    def any_loadable(self) -> bool:
        return any(self._loadable_at(i) for i in range(self.count()))

    def source(self) -> str | None:
        data = self.currentData()
        return data if _is_model(data) else None

    def summary(self, source: str | None = None) -> ModelSummary | None:
        """What the selected model (or ``source``) is; cached per file modification time."""
        source = self.source() if source is None else source
        if source is None:
            return None
        from ..model.sources import parse_model_source

        key = (source, parse_model_source(source).mtime())
        if key not in self._summaries:
            self._summaries[key] = describe_model(source)
        return self._summaries[key]

    def set_source(self, source: str | os.PathLike) -> None:
        """Select a model name, or add and select a checkpoint file."""
        text = os.fspath(source)
        index = self.findData(text)
        if index < 0:
            self.refresh()
            index = self.findData(text)
        if index < 0:
            self.add_checkpoint(text)
            return
        self.setCurrentIndex(index)

    def add_checkpoint(self, path: str | os.PathLike) -> None:
        path = os.fspath(path)
        if path not in self._checkpoints:
            self._checkpoints.append(path)
        self.refresh()
        self.setCurrentIndex(self.findData(path))

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        """Drop a checkpoint file from the list (it failed to load); the first loadable model is selected."""
        path = os.fspath(path)
        if path in self._checkpoints:
            self._checkpoints.remove(path)
            was_selected = self.source() == path
            self.refresh()
            if was_selected:
                index = next((i for i in range(self.count()) if self._loadable_at(i)), 0)
                self.setCurrentIndex(index)

    def missing_hint(self) -> str:
        """What to do when the selection cannot be loaded now, else ''."""
        summary = self.summary()
        return summary.hint if summary is not None else "pick a model"

    # ----------------------------------------------------------------- actions
    def choose_checkpoint_file(self) -> None:
        """The "Load checkpoint…" entry: a file dialog; the chosen file is listed and selected."""
        path, _ = QFileDialog.getOpenFileName(self, "Load a denoising checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.add_checkpoint(path)
        else:
            self.setCurrentIndex(self._previous)

    def _on_activated(self, index: int) -> None:
        data = self.itemData(index)
        if data == _LOAD:
            self.choose_checkpoint_file()
        elif data == _INSTALL:
            self.setCurrentIndex(self._previous)
            self.install_requested.emit()

    def _on_index_changed(self, index: int) -> None:
        if not _is_model(self.itemData(index)):  # the action entries are not models
            return
        self._previous = index
        self.source_changed.emit(self.source())


def _is_model(data) -> bool:
    return isinstance(data, str) and not data.startswith("\0")


def _tooltip(summary: ModelSummary) -> str:
    lines = [summary.description] if summary.description else []
    if summary.family_name:
        lines.append(f"Network: {summary.family_name}")
    if not summary.loadable:
        lines.append(summary.hint)
    return "\n".join(lines)
