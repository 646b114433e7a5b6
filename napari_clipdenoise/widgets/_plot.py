"""A small matplotlib canvas for the dock: one line per method (e.g. PSNR against noise level)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

#: Colours of napari's default dark theme, so the plot does not glare inside the dock.
BACKGROUND = "#262930"
FOREGROUND = "#f0f1f2"
GRID = "#414851"


class LinePlot(FigureCanvasQTAgg):
    """``plot(series, xlabel, ylabel)`` draws ``{name: (xs, ys)}`` as lines with markers."""

    def __init__(self, parent=None, *, height: float = 2.6):
        self.figure = Figure(figsize=(4.0, height), dpi=100, facecolor=BACKGROUND, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.axes = self.figure.add_subplot()
        self.setMinimumHeight(int(height * 80))
        self.clear("run a comparison to see PSNR against noise level")

    def _style(self) -> None:
        axes = self.axes
        axes.set_facecolor(BACKGROUND)
        for spine in axes.spines.values():
            spine.set_color(GRID)
        axes.tick_params(colors=FOREGROUND, labelsize=8)
        axes.xaxis.label.set_color(FOREGROUND)
        axes.yaxis.label.set_color(FOREGROUND)
        axes.title.set_color(FOREGROUND)
        axes.grid(True, color=GRID, linewidth=0.6)

    def clear(self, message: str = "") -> None:
        self.axes.clear()
        self._style()
        self.axes.set_xticks([])
        self.axes.set_yticks([])
        if message:
            self.axes.text(
                0.5,
                0.5,
                message,
                ha="center",
                va="center",
                color=FOREGROUND,
                fontsize=8,
                transform=self.axes.transAxes,
                wrap=True,
            )
        self.draw_idle()

    def plot(
        self,
        series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
        *,
        xlabel: str,
        ylabel: str,
        title: str = "",
    ) -> None:
        self.axes.clear()
        self._style()
        for name, (xs, ys) in series.items():
            dashed = name.startswith("noisy")
            self.axes.plot(
                xs,
                ys,
                marker="o",
                markersize=4,
                linewidth=1.5,
                label=name,
                linestyle="--" if dashed else "-",
                color="#9aa0a6" if dashed else None,
            )
        from matplotlib.ticker import MaxNLocator

        self.axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # short tick labels: 15, 20, 25
        self.axes.set_xlabel(xlabel, fontsize=8)
        self.axes.set_ylabel(ylabel, fontsize=8)
        if title:
            self.axes.set_title(title, fontsize=9)
        # under the axes, so it never hides a line (the constrained layout makes room for it)
        legend = self.axes.legend(
            fontsize=7,
            frameon=False,
            labelcolor=FOREGROUND,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.22),
            ncol=2,
        )
        legend.set_visible(bool(series))
        self.draw_idle()

    def lines(self) -> dict[str, tuple[list[float], list[float]]]:
        """What is drawn, as ``{label: (xs, ys)}`` (for tests and for reading values back)."""
        return {
            line.get_label(): (list(map(float, line.get_xdata())), list(map(float, line.get_ydata())))
            for line in self.axes.get_lines()
        }
