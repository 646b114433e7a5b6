"""Job plumbing both dock widgets share: cancel event, worker state, status messages, clean-up."""

from __future__ import annotations

import functools
import threading

ERROR_STYLE = "color: #ff6b6b;"


def _cancel_held(holder: list, *_) -> None:
    """Stop a running job when its widget is destroyed (e.g. the viewer was closed mid-run)."""
    if holder[0] is not None:
        holder[0].set()


class JobWidgetMixin:
    """For a QWidget with ``status`` (QLabel), ``progress_bar`` and ``_update_buttons()``.

    Call ``_init_job_state()`` in ``__init__``; a job stores its worker in ``_worker``,
    its cancel event in ``_cancel`` and ``_cancel_holder[0]``, and an optional napari
    progress bar in ``_pbar``.
    """

    def _init_job_state(self) -> None:
        self._worker = None
        self._cancel: threading.Event | None = None
        # the running job's cancel event, reachable after this widget's Qt object is gone
        self._cancel_holder: list = [None]
        self.destroyed.connect(functools.partial(_cancel_held, self._cancel_holder))
        self._pbar = None

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def cancel(self) -> None:
        """Stop the running job within one tile batch; nothing is added to the viewer."""
        if self._cancel is not None:
            self._cancel.set()
            self._set_status("Cancelling…")

    def _finish_job(self) -> bool:
        """Forget the finished job; False when the widget itself is already gone."""
        self._worker = None
        self._cancel = None
        self._cancel_holder[0] = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        try:
            self.objectName()
        except RuntimeError:  # the widget was closed while the job ran
            return False
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        return True

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else "")

    def _show_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self._set_status(message, error=True)
        show_error(message)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.cancel()
        super().closeEvent(event)
