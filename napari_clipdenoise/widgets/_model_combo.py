"""A combo box of denoising models: registry names, other installed models, and checkpoint files.

Listing models only looks at the cache folder; it never imports torch or loads weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog

from ..model.registry import REGISTRY, install_hint, installed_models, installed_path

LOAD_CHECKPOINT = "Load checkpoint…"
CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.pth *.pt);;All files (*)"


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
    """Model picker. ``source()`` is a registry/cache name or a checkpoint path for ``load_model``."""

    source_changed = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._previous = 0
        self._checkpoints: list[str] = []
        self.refresh()
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(self._on_index_changed)
        model_cache_signal().changed.connect(self._on_cache_changed)

    def _on_cache_changed(self) -> None:
        try:
            self.refresh()
        except RuntimeError:  # the Qt object is gone
            pass

    def refresh(self) -> None:
        """Re-read the cache folder (e.g. after ``clipdenoise models import``), keeping the selection."""
        current = self.source()
        self.blockSignals(True)
        self.clear()
        installed = set(installed_models())
        for name, entry in REGISTRY.items():
            label = name if name in installed else f"{name} (not installed)"
            self.addItem(label, name)
            self.setItemData(self.count() - 1, entry.description, 3)  # 3 = Qt.ToolTipRole
        for name in sorted(installed - set(REGISTRY)):
            self.addItem(f"{name} (installed)", name)
        for path in self._checkpoints:
            self.addItem(Path(path).name, path)
            self.setItemData(self.count() - 1, path, 3)
        self.addItem(LOAD_CHECKPOINT, None)
        # default: the current choice, else the first installed model, else the first registry entry
        index = self.findData(current) if current is not None else -1
        if index < 0:
            index = next((i for i in range(self.count()) if self.itemData(i) in installed), 0)
        self.setCurrentIndex(index)
        self._previous = index
        self.blockSignals(False)

    def source(self) -> str | None:
        return self.currentData()

    def set_source(self, source: str | os.PathLike) -> None:
        """Select a registry/cache name, or add and select a checkpoint file."""
        text = os.fspath(source)
        index = self.findData(text)
        if index < 0:
            if text in REGISTRY or text in installed_models():
                self.refresh()
                index = self.findData(text)
            else:
                self.add_checkpoint(text)
                return
        self.setCurrentIndex(index)

    def add_checkpoint(self, path: str | os.PathLike) -> None:
        path = os.fspath(path)
        if path not in self._checkpoints:
            self._checkpoints.append(path)
        self.refresh()
        self.setCurrentIndex(self.findData(path))

    def missing_hint(self) -> str:
        """The install hint when the selection is a registry name whose weights are not installed, else ''."""
        source = self.source()
        if source is None or source not in REGISTRY or installed_path(source).is_file():
            return ""
        return install_hint(source)

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) is not None or self.itemText(index) != LOAD_CHECKPOINT:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load a denoising checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.add_checkpoint(path)
        else:
            self.setCurrentIndex(self._previous)

    def _on_index_changed(self, index: int) -> None:
        if self.itemData(index) is None:  # "Load checkpoint…" itself is not a model
            return
        self._previous = index
        self.source_changed.emit(self.source())
