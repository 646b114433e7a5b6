"""Dock widgets that fit a laptop screen: their contents scroll instead of forcing the window taller."""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


class _Area(QScrollArea):
    """A scroll area that asks for its contents' width and a modest height."""

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = self.widget().sizeHint() if self.widget() is not None else QSize(300, 400)
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(hint.width() + bar, min(hint.height(), 640))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        minimum = self.widget().minimumSizeHint() if self.widget() is not None else QSize(200, 100)
        return QSize(minimum.width() + self.verticalScrollBar().sizeHint().width(), 120)


def scrolling_content(widget: QWidget) -> QWidget:
    """Fill ``widget`` with a vertical scroll area; returns the inner widget to put the controls in."""
    area = _Area(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    content = QWidget(area)
    area.setWidget(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    widget.scroll_area = area
    return content


class ScrollingDockMixin:
    """For a QWidget filled by :func:`scrolling_content`: ask the dock for the contents' own width."""

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        area = getattr(self, "scroll_area", None)
        return area.sizeHint() if area is not None else super().sizeHint()
