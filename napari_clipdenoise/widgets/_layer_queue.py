"""Adding result layers without freezing the viewer: one layer per turn of the event loop.

napari builds a layer's visual, thumbnail and layer-list row on the GUI thread,
about 0.1-0.25 s per image on a small CPU. Adding nine at once froze the viewer
for seconds; :class:`LayerQueue` adds them one at a time and lets the event loop
(painting, mouse, keyboard) run in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QObject, QTimer

from . import _layers

logger = logging.getLogger(__name__)


@dataclass
class LayerSpec:
    """One image layer to add (or update in place): its name, data and ``add_image`` keywords.

    ``after(layer)`` runs right after it is added (e.g. to move it in the layer list).
    """

    name: str
    data: Any
    kwargs: dict = field(default_factory=dict)
    after: Callable | None = None


class LayerQueue(QObject):
    """Adds :class:`LayerSpec` s to a viewer, one per event-loop turn, then calls ``done(layers)``.

    A new :meth:`submit` while one is running first finishes the pending layers
    of the earlier one at once (nothing is dropped). An error stops the queue and
    is passed to ``failed(exception)``.
    """

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self._pending: list[LayerSpec] = []
        self._removals: list = []
        self._added: list = []
        self._done: Callable | None = None
        self._failed: Callable | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._step)

    @property
    def busy(self) -> bool:
        return bool(self._pending) or bool(self._removals) or self._timer.isActive()

    def submit(
        self,
        specs: list[LayerSpec],
        done: Callable | None = None,
        failed: Callable | None = None,
        *,
        remove: list | None = None,
    ) -> None:
        """Add ``specs`` one per turn, after removing the layers in ``remove`` (also one per turn)."""
        if self.busy:
            self.flush()
        self._removals = list(remove or [])
        self._pending = list(specs)
        self._added = []
        self._done, self._failed = done, failed
        self._timer.start()

    def flush(self) -> None:
        """Add everything still pending now (e.g. before the viewer closes)."""
        self._timer.stop()
        while self._removals:
            self._remove_next()
        while self._pending:
            if not self._add_next():
                return
        self._finish()

    def _remove_next(self) -> None:
        layer = self._removals.pop(0)
        if layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    def _add_next(self) -> bool:
        spec = self._pending.pop(0)
        try:
            layer = _layers.add_or_update_image(self.viewer, spec.name, spec.data, **spec.kwargs)
            if spec.after is not None:
                spec.after(layer)
        except Exception as exc:  # reported by the owner; the viewer stays usable
            logger.debug("adding layer %r failed", spec.name, exc_info=True)
            self._pending.clear()
            failed, self._failed, self._done = self._failed, None, None
            if failed is not None:
                failed(exc)
            return False
        self._added.append(layer)
        return True

    def _step(self) -> None:
        if self._removals:
            self._remove_next()
            self._timer.start()
            return
        if not self._pending:
            self._finish()
            return
        if self._add_next():
            if self._pending:
                self._timer.start()
            else:
                self._finish()

    def _finish(self) -> None:
        done, self._done, self._failed = self._done, None, None
        if done is not None:
            done(list(self._added))
