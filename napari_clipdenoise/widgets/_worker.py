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
