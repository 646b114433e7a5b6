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
