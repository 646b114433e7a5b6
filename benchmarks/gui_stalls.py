"""How long the napari event loop stalls while the widgets work (prints numbers; not a test).

Run under a virtual display, e.g.::

    xvfb-run -a .venv/bin/python benchmarks/gui_stalls.py

A 10 ms QTimer records when the event loop runs; the longest gap between its
ticks is the longest stall a user would feel. Measured: a multi-tile Denoise run
(tiles only, after a warm-up run that loads the model). The target is < 250 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_API", "pyqt6")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class StallProbe:
    """Records the event loop's ticks between ``start`` and ``stop``."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self):
        self.ticks.clear()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    def longest_gap_ms(self) -> float:
        return float(np.diff(self.ticks).max() * 1000) if len(self.ticks) > 1 else float("nan")


def wait(app, condition, timeout=300.0):
    deadline = time.perf_counter() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > deadline:
            raise TimeoutError("the job did not finish in time")


def denoise_run(viewer, app, checkpoint: Path, size: int) -> dict:
    from napari_clipdenoise.widgets.denoise import DenoiseWidget

    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((2, size, size), dtype=np.float32), name="stack")
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_checkpoint(checkpoint)
    widget.tile_size.setValue(32)
    widget.overlap.setValue(16)
    widget.device.setCurrentText("cpu")
    widget.precision.setCurrentText("fp32")
    widget.preview_button.click()  # warm-up: loads the model
    wait(app, lambda: not widget.is_running)
    probe = StallProbe()
    with probe:
        widget.run_button.click()
        wait(app, lambda: not widget.is_running)
    return {"case": f"Denoise run, 2 x {size} x {size}, 32 px tiles", "longest_stall_ms": probe.longest_gap_ms()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args(argv)
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_clipdenoise.model.testing import write_project_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "random.safetensors"
        write_project_checkpoint(checkpoint, 3, seed=0)
        viewer = napari.Viewer(show=True)
        app = QApplication.instance()
        rows = [denoise_run(viewer, app, checkpoint, args.size)]
        viewer.close()
    print(f"CPU: {_cpu()}, {os.cpu_count()} cores")
    for row in rows:
        print(f"{row['case']}: longest event-loop stall {row['longest_stall_ms']:.0f} ms (target < 250 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
