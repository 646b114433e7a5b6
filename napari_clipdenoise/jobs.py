"""Running blocking core calls as generators that yield progress (for napari thread workers, or any loop).

The core (``denoise``, baselines) reports progress through a plain callback and
stops when a ``threading.Event`` is set. A napari ``thread_worker`` wants a
generator that *yields* progress. :func:`iterate_progress` bridges the two: it
runs the call in a helper thread, forwards each callback as a yielded
:class:`Progress`, and returns the call's result (or re-raises its error) when
the call ends. Nothing here imports Qt or torch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

#: Seconds between checks of the helper thread when no progress arrives.
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` steps of the current stage, plus a caption."""

    done: int
    total: int
    message: str = ""


@dataclass
class JobOutcome:
    """What a widget job ended with: a value, a cancellation, or an error to show to the user."""

    value: Any = None
    cancelled: bool = False
    error: BaseException | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.cancelled and self.error is None


def iterate_progress(
    call: Callable[[Callable[[int, int], None]], Any],
    *,
    message: str = "",
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, Any]:
    """Run ``call(progress)`` in a helper thread and yield a :class:`Progress` per callback.

    Parameters
    ----------
    call : callable
        Takes one argument, a ``progress(done, total)`` callback, and returns the result.
    message : str
        Caption attached to every yielded :class:`Progress`.
    cancel : threading.Event, optional
        Set when the generator is closed early (e.g. the worker was quit), so the
        call stops at its next check.

    Returns
    -------
    The call's return value (as the generator's ``StopIteration.value``; use ``yield from``).
    Any exception raised by the call is re-raised here, in the consumer's thread.
    """
    reports: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call(lambda done, total: reports.put((int(done), int(total))))
        except BaseException as exc:  # re-raised in the consumer's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="clipdenoise-job", daemon=True)
    thread.start()
    try:
        while True:
            try:
                done, total = reports.get(timeout=POLL_INTERVAL)
            except queue.Empty:
                if not thread.is_alive():
                    break
                continue
            yield Progress(done, total, message)
        # drain reports that arrived just before the thread ended
        while not reports.empty():
            done, total = reports.get_nowait()
            yield Progress(done, total, message)
    finally:
        if thread.is_alive():  # closed early: ask the call to stop and let it finish
            if cancel is not None:
                cancel.set()
            thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@dataclass(frozen=True)
class ProgressView:
    """What a progress display should show now.

    ``total == 0`` means "busy, no count to show" (a stage without steps, or a
    run of one tile, whose only count would sit at 0 / 1 until the end).
    """

    done: int
    total: int
    text: str

    @property
    def busy(self) -> bool:
        return self.total <= 0


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 60:
        return f"{value:.0f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes} min {seconds:02d} s"


class ProgressTracker:
    """Turns a job's :class:`Progress` reports into honest text: stage, counts, elapsed time, time left.

    ``update(report)`` takes each report; ``view()`` renders the latest one with the
    current time (call it from a timer so the elapsed time moves during long steps).
    A report with ``total <= 0`` is a stage without counts ("loading model");
    ``done < 0`` keeps the count and only changes the caption. A run of one step is
    shown as busy with "(one tile)" instead of "0 / 1". The time left is estimated
    from the steps done since the counting stage began, once at least one is done.

    Parameters
    ----------
    unit : str
        What the counts count ("tiles", "blocks", "steps").
    clock : callable, optional
        Seconds as a float (default :func:`time.monotonic`); tests pass their own.
    """

    def __init__(self, unit: str = "tiles", clock: Callable[[], float] | None = None):
        import time

        self.unit = unit
        self._clock = clock or time.monotonic
        self._started = self._clock()
        self._message = ""
        self._done = 0
        self._total = 0
        self._count_started: float | None = None
        self._count_start_done = 0

    def update(self, report: Progress) -> ProgressView:
        if report.message:
            self._message = report.message
        if report.done >= 0 and report.total > 0:
            if self._count_started is None or report.total != self._total or report.done < self._done:
                self._count_started = self._clock()
                self._count_start_done = report.done
            self._done, self._total = report.done, report.total
        elif report.total == 0:  # a new stage without counts
            self._done = self._total = 0
            self._count_started = None
        return self.view()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def view(self) -> ProgressView:
        caption = self._message or "working"
        elapsed = _seconds(self.elapsed)
        if self._total <= 0:
            return ProgressView(0, 0, f"{caption}… {elapsed}")
        if self._total == 1 and self._done < 1:
            single = self.unit[:-1] if self.unit.endswith("s") else self.unit
            return ProgressView(0, 0, f"{caption} (one {single})… {elapsed}")
        text = f"{caption}: {self._done} / {self._total} {self.unit} · {elapsed}"
        counted = self._done - self._count_start_done
        if 0 < self._done < self._total and counted > 0 and self._count_started is not None:
            rate = (self._clock() - self._count_started) / counted
            text += f", about {_seconds(rate * (self._total - self._done))} left"
        return ProgressView(self._done, self._total, text)
