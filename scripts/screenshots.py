"""Screenshots of the two dock widgets in use, for the README and docs/napari.md.

Run under a (virtual) X display:

    xvfb-run -a .venv/bin/python scripts/screenshots.py

Writes docs/images/denoise_widget.png and docs/images/compare_widget.png.
No trained weights can be downloaded here, so the Denoise screenshot is taken
*during* a run of a seeded random-weight model installed as
``random-weights-demo`` in a temporary model cache (no result is shown; its
pixels would mean nothing). The comparison uses the classical methods only,
whose results are real.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
WINDOW = (1500, 1040)
MAX_BYTES = 300_000


def process_events(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def wait_until(app, condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def gray_friendly_palette(image, grays: int = 192):
    """A 256-colour version of ``image``: ``grays`` even grey levels (smooth grey images, no
    banding) plus the remaining colours fitted to the image's coloured pixels (UI, plot lines)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    greyish = (np.abs(pixels[..., 0] - pixels[..., 1]) < 6) & (np.abs(pixels[..., 1] - pixels[..., 2]) < 6)
    levels = np.linspace(0, 255, grays).round().astype(np.uint8)
    palette = [np.stack([levels] * 3, axis=1)]
    coloured = pixels[~greyish].astype(np.uint8)
    count = 256 - grays
    if len(coloured):
        fitted = Image.fromarray(coloured.reshape(1, -1, 3)).quantize(
            colors=count, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        palette.append(np.asarray(fitted.getpalette()[: count * 3], dtype=np.uint8).reshape(-1, 3))
    holder = Image.new("P", (1, 1))
    holder.putpalette(np.concatenate(palette).ravel().tolist())
    return image.convert("RGB").quantize(palette=holder, dither=Image.Dither.NONE)


def save(viewer, name: str) -> Path:
    import numpy as np
    from PIL import Image

    pixels = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(pixels)[..., :3])
    path = OUT / name
    image.save(path, optimize=True)
    # too big for the repository: 256 colours without dithering (its noise does not compress), then smaller
    while path.stat().st_size > MAX_BYTES:
        gray_friendly_palette(image).save(path, optimize=True)
        if path.stat().st_size > MAX_BYTES:
            image = image.resize((image.width * 9 // 10, image.height * 9 // 10), Image.Resampling.LANCZOS)
    print(f"wrote {path.relative_to(ROOT)} ({image.width}x{image.height}, {path.stat().st_size / 1000:.0f} kB)")
    return path


def new_viewer(title: str):
    import napari

    viewer = napari.Viewer(title=title, show=True)
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def denoise_screenshot(app) -> None:
    from napari_clipdenoise.model.registry import install_model
    from napari_clipdenoise.model.testing import write_project_checkpoint
    from napari_clipdenoise.sample_data import noisy_stack
    from napari_clipdenoise.widgets.denoise import DenoiseWidget

    scratch = Path(tempfile.mkdtemp(prefix="clipdenoise-shots-"))
    write_project_checkpoint(scratch / "random.safetensors", 3, seed=0)
    install_model(scratch / "random.safetensors", "random-weights-demo")

    viewer = new_viewer("napari-clipdenoise: Denoise")
    for data, kwargs, _ in noisy_stack():
        viewer.add_image(data, **kwargs)
    viewer.dims.set_current_step(0, 12)
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise (CLIP)", area="right")
    widget.layer_combo.set_layer("stack_noisy")
    widget.residual_check.setChecked(True)
    widget.advanced_toggle.setChecked(True)
    widget.tile_size.setValue(64)
    widget.overlap.setValue(16)
    process_events(app, 1.0)
    viewer.reset_view()
    widget.run_button.click()
    wait_until(app, lambda: widget.progress_bar.maximum() > 0 and widget.progress_bar.value() >= 40, 300, "tiles")
    process_events(app, 0.5)
    save(viewer, "denoise_widget.png")
    widget.cancel()
    wait_until(app, lambda: not widget.is_running, 120, "the cancelled run to end")
    viewer.close()


def compare_screenshot(app) -> None:
    from napari_clipdenoise.sample_data import noisy_photograph
    from napari_clipdenoise.widgets.compare import CompareWidget

    os.environ["CLIPDENOISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="clipdenoise-cache-")  # no demo model listed
    viewer = new_viewer("napari-clipdenoise: noise-level comparison")
    (clean, kwargs, _), _ = noisy_photograph()
    viewer.add_image(clean[::2, ::2], name="camera_clean")  # 256 x 256 keeps NL-means quick
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Noise-level comparison", area="right")
    widget.set_methods(["nl_means", "tv", "wavelet"])
    widget.noise.setCurrentText("gaussian")
    widget.levels.setText("15, 25, 50")
    widget.run_button.click()
    wait_until(app, lambda: not widget.is_running, 300, "the comparison")
    if "Done" not in widget.status.text():
        raise RuntimeError(f"the comparison did not finish: {widget.status.text()}")
    # grid of the sigma-25 noisy image and its three denoised versions
    for layer in viewer.layers:
        layer.visible = " 25 · " in layer.name
    widget.grid_button.setChecked(True)
    process_events(app, 1.0)
    viewer.reset_view()
    process_events(app, 1.0)
    save(viewer, "compare_widget.png")
    viewer.close()


def main() -> int:
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        print("no X display: run under xvfb-run -a", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["CLIPDENOISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="clipdenoise-cache-")
    OUT.mkdir(parents=True, exist_ok=True)
    import napari  # noqa: F401  (creates the QApplication with napari's settings)
    from napari._qt.qt_event_loop import get_qapp
    from qtpy.QtWidgets import QApplication

    app = get_qapp()
    denoise_screenshot(app)
    compare_screenshot(app)
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
