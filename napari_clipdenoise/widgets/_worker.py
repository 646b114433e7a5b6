"""Guarding Qt slots of dock widgets that a worker may outlive."""

from __future__ import annotations

from collections.abc import Callable


def if_alive(widget, slot: Callable) -> Callable:
    """Wrap ``slot`` so it does nothing once ``widget``'s Qt object has been deleted.

    A worker can finish after its dock widget was closed; its signals must then
    not touch the deleted widgets.
    """

    def guarded(*args):
        try:
            widget.objectName()
        except RuntimeError:  # wrapped C/C++ object has been deleted
            return None
        return slot(*args)

    return guarded


def job_worker(job: Callable, *args, **kwargs):
    """A napari worker (not started) for the generator ``job(*args, **kwargs)``.

    The worker thread imports torch before the job starts, in the way that keeps
    the viewer responsive (:func:`napari_clipdenoise._torch.import_torch`).
    """
    from napari.qt.threading import create_worker

    return create_worker(_torch_first, job, *args, _start_thread=False, **kwargs)


def _torch_first(job: Callable, *args, **kwargs):
    from .._torch import import_torch

    try:
        import_torch()
    except Exception:  # noqa: BLE001 - only a head start: the job imports torch itself and reports failures
        pass
    return (yield from job(*args, **kwargs))
