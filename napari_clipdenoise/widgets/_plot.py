"""A small line plot for the dock (e.g. PSNR against noise level), drawn off the GUI thread.

matplotlib takes 70-250 ms to lay out and draw even a four-line plot on a small
CPU; drawn on the GUI thread (a ``FigureCanvasQTAgg``) that froze the viewer as
the comparison's results arrived. :class:`LinePlot` is a label showing a picture
of the plot: each :meth:`~LinePlot.plot` or resize renders a fresh figure with
the Agg backend in a helper thread (no figure is shared between threads) and
the label shows it when it is ready. A newer request replaces one still
waiting; a finished picture that is no longer the latest is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence

from qtpy.QtCore import QSize, Qt, QTimer, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy

logger = logging.getLogger(__name__)

#: Colours of napari's default dark theme, so the plot does not glare inside the dock.
BACKGROUND = "#262930"
FOREGROUND = "#f0f1f2"
GRID = "#414851"
DPI = 100


class LinePlot(QLabel):
    """``plot(series, xlabel, ylabel)`` draws ``{name: (xs, ys)}`` as lines with markers."""

    #: (generation, RGBA bytes, width, height) of a finished picture (emitted from the helper thread).
    rendered = Signal(int, bytes, int, int)

    def __init__(self, parent=None, *, height: float = 2.6):
        super().__init__(parent)
        self._height_inches = height
        self._spec: dict = {}
        self._generation = 0
        self._shown_generation = -1
        self._rendering = False
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(int(height * 80))
        self.setMinimumWidth(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setStyleSheet(f"background: {BACKGROUND};")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)  # a burst of updates (training steps, a resize) renders once
        self._timer.timeout.connect(self._start_render)
        self.rendered.connect(self._on_rendered)
        self.clear("run a comparison to see PSNR against noise level")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(4 * DPI, int(self._height_inches * DPI))

    # ----------------------------------------------------------------- what to draw
    def clear(self, message: str = "") -> None:
        """An empty plot, with ``message`` in the middle."""
        self._spec = {"message": message}
        self._request()

    def plot(
        self,
        series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
        *,
        xlabel: str,
        ylabel: str,
        title: str = "",
    ) -> None:
        series = {str(name): ([float(x) for x in xs], [float(y) for y in ys]) for name, (xs, ys) in series.items()}
        self._spec = {"series": series, "xlabel": xlabel, "ylabel": ylabel, "title": title}
        self._request()

    def lines(self) -> dict[str, tuple[list[float], list[float]]]:
        """What is drawn, as ``{label: (xs, ys)}`` (for tests and for reading values back)."""
        return {name: (list(xs), list(ys)) for name, (xs, ys) in self._spec.get("series", {}).items()}

    @property
    def up_to_date(self) -> bool:
        """The picture shown is of the latest :meth:`plot` or :meth:`clear` at the current size."""
        return self._shown_generation == self._generation and not self._timer.isActive()

    # ----------------------------------------------------------------- rendering
    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._request()

    def _request(self) -> None:
        self._generation += 1
        self._timer.start()

    def _start_render(self) -> None:
        if self._rendering:  # the running one reports back, then the latest request starts
            return
        self._rendering = True
        ratio = max(1.0, float(self.devicePixelRatioF()))
        width = max(self.width(), self.minimumWidth(), 1)
        height = max(self.height(), self.minimumHeight(), 1)
        job = (self._generation, dict(self._spec), int(width * ratio), int(height * ratio), DPI * ratio)
        threading.Thread(target=self._render, args=job, name="clipdenoise-plot", daemon=True).start()

    def _render(self, generation: int, spec: dict, width: int, height: int, dpi: float) -> None:
        try:
            pixels = render_plot(spec, width, height, dpi)
        except Exception:  # a plot must never take the widget down
            logger.exception("drawing the plot failed")
            pixels = b"\0" * (width * height * 4)
        try:
            self.rendered.emit(generation, pixels, width, height)
        except RuntimeError:  # the widget was deleted meanwhile
            pass

    def _on_rendered(self, generation: int, pixels: bytes, width: int, height: int) -> None:
        self._rendering = False
        if generation == self._generation:
            image = QImage(pixels, width, height, 4 * width, QImage.Format.Format_RGBA8888).copy()
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(max(1.0, float(self.devicePixelRatioF())))
            self.setPixmap(pixmap)
            self._shown_generation = generation
        elif not self._timer.isActive():
            self._start_render()


def render_plot(spec: dict, width: int, height: int, dpi: float) -> bytes:
    """The plot described by ``spec`` as ``width`` x ``height`` RGBA bytes (matplotlib's Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(figure)
    series = spec.get("series", {})
    # fixed margins: a layout engine measuring every text costs more than the drawing itself
    bottom = 0.36 if series else 0.06
    figure.subplots_adjust(left=0.15, right=0.97, top=0.88 if spec.get("title") else 0.95, bottom=bottom)
    axes = figure.add_subplot()
    axes.set_facecolor(BACKGROUND)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    axes.tick_params(colors=FOREGROUND, labelsize=8)
    axes.grid(True, color=GRID, linewidth=0.6)
    if not series:
        axes.set_xticks([])
        axes.set_yticks([])
        message = spec.get("message", "")
        if message:
            axes.text(
                0.5, 0.5, message, ha="center", va="center", color=FOREGROUND, fontsize=8, transform=axes.transAxes
            )
    else:
        for name, (xs, ys) in series.items():
            dashed = name.startswith("noisy")
            axes.plot(
                xs,
                ys,
                marker="o",
                markersize=4,
                linewidth=1.5,
                label=name,
                linestyle="--" if dashed else "-",
                color="#9aa0a6" if dashed else None,
            )
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # short tick labels: 15, 20, 25
        axes.set_xlabel(spec.get("xlabel", ""), fontsize=8, color=FOREGROUND)
        axes.set_ylabel(spec.get("ylabel", ""), fontsize=8, color=FOREGROUND)
        if spec.get("title"):
            axes.set_title(spec["title"], fontsize=9, color=FOREGROUND)
        # under the axes, so it never hides a line
        axes.legend(
            fontsize=7, frameon=False, labelcolor=FOREGROUND, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2
        )
    canvas.draw()
    return bytes(canvas.buffer_rgba())
