"""Writing each montage cell's name into its strip, with Qt's text rendering.

The text is drawn white on the montage's dark background (``high`` and ``low``
image values), so it reads at any contrast the user picks in between. A name
that does not fit the cell's width is drawn smaller (down to
:data:`MIN_FONT_FRACTION` of the strip) before it is elided in the middle.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QRect, Qt
from qtpy.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter

from ..montage import Montage

#: Text height as a fraction of the strip: at most, and at least before eliding.
FONT_FRACTION = 0.66
MIN_FONT_FRACTION = 0.42


def draw_cell_names(montage: Montage, low: float, high: float) -> list[dict]:
    """Write the names into ``montage.image`` (in place); returns how each was drawn (text, pixel size)."""
    drawn = []
    for cell in montage.cells:
        rows, columns = cell.strip_slice()
        strip_height = rows.stop - rows.start
        alpha, text, size = _text_mask(cell.name, cell.width, strip_height)
        values = low + (high - low) * alpha
        target = montage.image[rows, columns]
        if target.ndim == 3:
            values = values[..., None]
        target[...] = values.astype(montage.image.dtype)
        drawn.append({"name": cell.name, "text": text, "font_pixels": size, "elided": text != cell.name})
    return drawn


def _text_mask(name: str, width: int, height: int) -> tuple[np.ndarray, str, int]:
    """Coverage (0-1) of ``name`` written left-aligned in a ``height`` x ``width`` strip."""
    image = QImage(width, height, QImage.Format.Format_Grayscale8)
    image.fill(QColor(0, 0, 0))
    margin = max(2, height // 4)
    room = max(1, width - 2 * margin)
    size = max(6, round(height * FONT_FRACTION))
    smallest = max(6, round(height * MIN_FONT_FRACTION))
    font = QFont()
    font.setPixelSize(size)
    while QFontMetrics(font).horizontalAdvance(name) > room and size > smallest:
        size -= 1
        font.setPixelSize(size)
    text = QFontMetrics(font).elidedText(name, Qt.TextElideMode.ElideMiddle, room)
    painter = QPainter(image)
    try:
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        painter.setFont(font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(QRect(margin, 0, room, height), int(Qt.AlignmentFlag.AlignVCenter), text)
    finally:
        painter.end()
    bits = image.constBits()
    if hasattr(bits, "setsize"):  # PyQt hands out a sip pointer, PySide a memoryview
        bits.setsize(image.sizeInBytes())
    rows = np.frombuffer(bits, np.uint8).reshape(height, image.bytesPerLine())[:, :width]
    return rows.astype(np.float32) / 255.0, text, size
