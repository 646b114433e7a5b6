"""Job plumbing both dock widgets share: cancel event, worker state, status messages, clean-up."""

from __future__ import annotations

import functools
import threading

from ..jobs import Progress, ProgressTracker, ProgressView

ERROR_STYLE = "color: #ff6b6b;"
#: How often the elapsed time in the status line moves during a long step (ms).
TICK_MS = 500
#: Least time between two updates of the progress bars (s): a progress bar repaints at once when its
#: value changes, and in napari's window (an OpenGL canvas) every repaint composes the whole window.
MIN_BAR_INTERVAL = 0.2


def _cancel_held(holder: list, *_) -> None:
    """Stop a running job when its widget is destroyed (e.g. the viewer was closed mid-run)."""
    if holder[0] is not None:
        holder[0].set()


class JobWidgetMixin:
    """For a QWidget with ``status`` (QLabel), ``progress_bar`` and ``_update_buttons()``.

    Call ``_init_job_state()`` in ``__init__``; a job stores its worker in ``_worker``,
    its cancel event in ``_cancel`` and ``_cancel_holder[0]``. ``_start_progress``
    opens the napari activity entry and the honest progress text
    (:class:`~napari_clipdenoise.jobs.ProgressTracker`); ``_on_progress`` takes the
    worker's reports.
    """

    def _init_job_state(self) -> None:
        from qtpy.QtCore import QTimer

        self._worker = None
        self._cancel: threading.Event | None = None
        # the running job's cancel event, reachable after this widget's Qt object is gone
        self._cancel_holder: list = [None]
        self.destroyed.connect(functools.partial(_cancel_held, self._cancel_holder))
        self._pbar = None
        self._pbar_desc = ""
        self._pbar_stage = ""
        self._tracker: ProgressTracker | None = None
        self._bar_shown_at = 0.0
        self._unit = "tiles"
        self._ticker = QTimer(self)
        self._ticker.setInterval(TICK_MS)
        self._ticker.timeout.connect(self._on_tick)

    def _set_idle_bar(self) -> None:
        """Idle: no bar at all (no "0%"); the status line says what happened last."""
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.setVisible(False)

    def _start_progress(self, description: str, unit: str = "tiles") -> None:
        """A job starts: the activity panel entry, the tracker, the ticking elapsed time."""
        from napari.utils import progress

        self._unit = unit
        self._tracker = ProgressTracker(unit)
        self._pbar_desc = description
        self._pbar_stage = ""
        self._pbar = progress(total=0, desc=description)
        self.progress_bar.setVisible(True)
        self._ticker.start()
        self._show_progress(self._tracker.view())

    def _stop_progress_text(self) -> None:
        """The job's outcome is about to be shown: stop the ticking text from writing over it."""
        self._tracker = None
        self._ticker.stop()

    def _on_progress(self, report: Progress) -> None:
        if self._tracker is not None:
            self._show_progress(self._tracker.update(report))

    def _on_tick(self) -> None:
        if self._tracker is not None and self.is_running:
            self._show_progress(self._tracker.view())

    def _show_progress(self, view: ProgressView) -> None:
        import time

        now = time.monotonic()
        stage = view.text.split(":")[0].split("…")[0].strip()
        last = view.total > 0 and view.done >= view.total
        if now - self._bar_shown_at < MIN_BAR_INTERVAL and stage == self._pbar_stage and not last:
            return  # the next report or tick shows it
        self._bar_shown_at = now
        if view.busy:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, view.total)
            self.progress_bar.setValue(view.done)
            self.progress_bar.setFormat(f"%v / %m {self._unit}")
        self._set_status(view.text)
        pbar = self._pbar
        if pbar is None:
            return
        if stage != self._pbar_stage:
            self._pbar_stage = stage
            pbar.set_description(f"{self._pbar_desc}: {stage}")
        total = 0 if view.busy else view.total
        if pbar.total != total:
            pbar.total = total
            pbar.n = 0
        if total and view.done > pbar.n:
            pbar.update(view.done - pbar.n)

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
        self._tracker = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        try:
            self.objectName()
        except RuntimeError:  # the widget was closed while the job ran
            return False
        self._ticker.stop()
        self._set_idle_bar()
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
