"""Screenshots of the plugin in use, for the README and docs/napari.md, at laptop and desktop sizes.

Run under a (virtual) X display, with a trained checkpoint of the real architecture:

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshots.py \\
        --checkpoint /work/demo_run/gaussian15.safetensors

The checkpoint is installed (validated) in a temporary model cache as ``demo_gaussian15``
and labelled on every image: it is the demonstration model of
``python -m napari_clipdenoise.training.demo`` (random encoder, 1,200 iterations on
13 small images), never the paper's model. For each window size (default 1366x768
and 1920x1080) it writes into docs/images:

- ``denoise_<size>.png``: the Denoise widget after a run on the noisy photograph sample,
  input and result side by side;
- ``compare_<size>.png``: the comparison's grid (levels x clean/noisy/methods) with the
  widget's table and plot;
- ``compare_table_<size>.png``: the same, the dock scrolled to its table and plot (only at
  sizes where the dock scrolls);
- ``no_model_<size>.png``: the Denoise widget with the paper's ``gaussian15`` chosen but not installed
  (Install / Load / Download).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
MAX_BYTES = 400_000
DEMO_NAME = "demo_gaussian15"
DEMO_CAPTION = "demo_gaussian15: demonstration model (random encoder), not the paper's"


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


def save(viewer, app, name: str) -> Path:
    """``viewer.screenshot(canvas_only=False)`` at the window's own size (never scaled down)."""
    import numpy as np
    from PIL import Image

    process_events(app, 0.5)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(pixels)[..., :3])
    path = OUT / name
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:  # 256 colours without dithering (its noise does not compress)
        gray_friendly_palette(image).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({image.width}x{image.height}, {path.stat().st_size / 1000:.0f} kB)")
    return path


def new_viewer(title: str, size: tuple[int, int]):
    import napari

    viewer = napari.Viewer(title=title, show=True)
    window = viewer.window._qt_window
    window.resize(*size)
    window.move(0, 0)
    return viewer


def caption(viewer, text: str) -> None:
    """A line of text on the canvas (bottom left), e.g. what the model is."""
    overlay = viewer.canvas.overlays["text"] if hasattr(viewer, "canvas") else viewer.text_overlay
    overlay.text = text
    overlay.position = "bottom_left"
    overlay.font_size = 8
    overlay.color = "#ffb347"
    overlay.box = True
    overlay.visible = True


def photograph(viewer) -> None:
    from napari_clipdenoise.sample_data import noisy_photograph

    for data, kwargs, _ in noisy_photograph():
        viewer.add_image(data, **kwargs)


def denoise_screenshot(app, size, tag: str) -> None:
    from napari_clipdenoise.widgets.denoise import DenoiseWidget

    viewer = new_viewer("napari-clipdenoise: Denoise", size)
    photograph(viewer)
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise (CLIP)", area="right")
    widget.model_combo.set_source(DEMO_NAME)
    widget.layer_combo.set_layer("camera_noisy")
    widget.residual_check.setChecked(True)
    process_events(app, 0.5)
    widget.run_button.click()
    wait_until(app, lambda: not widget.is_busy, 600, "the Denoise run")
    if "Done" not in widget.status.text():
        raise RuntimeError(f"the run did not finish: {widget.status.text()}")
    widget.before_after.side_by_side.click()
    wait_until(app, lambda: not widget.is_busy, 60, "the side-by-side view")
    caption(viewer, DEMO_CAPTION)
    save(viewer, app, f"denoise_{tag}.png")
    viewer.close()


def compare_screenshot(app, size, tag: str) -> None:
    from napari_clipdenoise.sample_data import noisy_photograph
    from napari_clipdenoise.widgets.compare import CompareWidget

    viewer = new_viewer("napari-clipdenoise: noise-level comparison", size)
    (clean, clean_kwargs, _), (noisy, noisy_kwargs, _) = noisy_photograph()
    viewer.add_image(clean[::2, ::2], **clean_kwargs)  # 256 x 256 keeps NL-means quick
    viewer.add_image(noisy[::2, ::2], **noisy_kwargs)
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Noise-level comparison", area="right")
    if widget.layer_combo.currentText() != "camera_clean":
        raise RuntimeError("the comparison did not preselect the clean reference")
    widget.set_methods([f"model:{DEMO_NAME}", "nl_means", "wavelet"])
    widget.noise.setCurrentText("gaussian")
    widget.levels.setText("15, 25, 50")
    widget.run_button.click()
    wait_until(app, lambda: not widget.is_busy, 900, "the comparison")
    if "Done" not in widget.status.text():
        raise RuntimeError(f"the comparison did not finish: {widget.status.text()}")
    caption(viewer, DEMO_CAPTION)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom = camera.zoom * 0.93  # leave the caption a strip of its own under the montage
    save(viewer, app, f"compare_{tag}.png")
    area = widget.scroll_area
    process_events(app, 0.5)  # the table and plot have their final sizes
    bar = area.verticalScrollBar()
    if bar.maximum() > 0:  # the dock scrolls at this size: show its lower half too
        bar.setValue(bar.maximum())
        save(viewer, app, f"compare_table_{tag}.png")
    viewer.close()


def no_model_screenshot(app, size, tag: str) -> None:
    from napari_clipdenoise.widgets.denoise import DenoiseWidget

    os.environ["CLIPDENOISE_CACHE_DIR"] = tempfile.mkdtemp(prefix="clipdenoise-empty-")
    viewer = new_viewer("napari-clipdenoise: no model installed yet", size)
    photograph(viewer)
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise (CLIP)", area="right")
    # the bundled IDF model is the working default; choosing the paper's model shows the missing state
    widget.model_combo.set_source("gaussian15")
    process_events(app, 0.5)
    save(viewer, app, f"no_model_{tag}.png")
    viewer.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a trained checkpoint (the demonstration model)")
    parser.add_argument("--sizes", default="1366x768,1920x1080", help="window sizes, e.g. 1366x768,1920x1080")
    parser.add_argument("--only", default="denoise,compare,no_model", help="which screenshots")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        print("no X display: run under xvfb-run -a", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = tempfile.mkdtemp(prefix="clipdenoise-cache-")
    os.environ["CLIPDENOISE_CACHE_DIR"] = cache
    OUT.mkdir(parents=True, exist_ok=True)
    import napari  # noqa: F401  (creates the QApplication with napari's settings)
    from napari._qt.qt_event_loop import get_qapp

    from napari_clipdenoise.model.registry import install_model

    install_model(args.checkpoint, DEMO_NAME)
    app = get_qapp()
    wanted = set(args.only.split(","))
    for text in args.sizes.split(","):
        width, height = (int(v) for v in text.lower().split("x"))
        os.environ["CLIPDENOISE_CACHE_DIR"] = cache
        if "denoise" in wanted:
            denoise_screenshot(app, (width, height), text)
        if "compare" in wanted:
            compare_screenshot(app, (width, height), text)
        if "no_model" in wanted:
            no_model_screenshot(app, (width, height), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
