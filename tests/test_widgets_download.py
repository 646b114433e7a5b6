"""The Denoise widget's Download button: a real HTTP mirror on loopback, progress, install, select, cancel."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_clipdenoise.widgets.denoise import DenoiseWidget  # noqa: E402


class _Mirror:
    """Serves ``files`` (name -> bytes) over HTTP on loopback; ``delay`` seconds between 64 KiB pieces."""

    def __init__(self, files: dict[str, bytes], delay: float = 0.0):
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                body = files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for start in range(0, len(body), 1 << 16):
                    if mirror.stop.is_set():
                        return
                    self.wfile.write(body[start : start + (1 << 16)])
                    time.sleep(delay)

            def log_message(self, *args):
                pass

        self.stop = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def reference_pth(tmp_path_factory):
    from napari_clipdenoise.model.testing import write_reference_checkpoint

    path = tmp_path_factory.mktemp("release") / "gaussian15.pth"
    write_reference_checkpoint(path, 3, seed=0)
    return path.read_bytes()


def _widget(make_napari_viewer, monkeypatch, mirror):
    monkeypatch.setenv("CLIPDENOISE_MODEL_MIRROR", mirror.url)
    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_combo.set_source("gaussian15")
    return widget


def test_download_installs_and_selects_the_model(make_napari_viewer, qtbot, monkeypatch, reference_pth, tmp_path):
    from napari_clipdenoise.model.registry import installed_path

    mirror = _Mirror({"gaussian15.pth": reference_pth})
    try:
        widget = _widget(make_napari_viewer, monkeypatch, mirror)
        assert widget.model_state.showing_missing and widget.download_button.isVisibleTo(widget)
        maxima = []
        widget.progress_bar.valueChanged.connect(lambda _v: maxima.append(widget.progress_bar.maximum()))
        widget.download_button.click()
        qtbot.waitUntil(lambda: not widget.is_running, timeout=120_000)
        assert installed_path("gaussian15").is_file()
        assert widget.model_combo.source() == "gaussian15" and not widget.model_state.showing_missing
        assert not widget.download_button.isVisibleTo(widget)  # installed: nothing left to download
        assert "Installed 'gaussian15'" in widget.status.text()
        assert max(maxima) >= len(reference_pth) >> 20  # the bar counted the file's megabytes
    finally:
        mirror.close()


def test_cancel_stops_the_download_and_installs_nothing(make_napari_viewer, qtbot, monkeypatch, reference_pth):
    from napari_clipdenoise.model.registry import installed_path

    mirror = _Mirror({"gaussian15.pth": reference_pth}, delay=0.05)  # ~1.3 MB/s: long enough to cancel
    try:
        widget = _widget(make_napari_viewer, monkeypatch, mirror)
        widget.download_button.click()
        qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=60_000)  # a megabyte arrived
        widget.cancel_button.click()
        qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
        assert "nothing was installed" in widget.status.text()
        assert not installed_path("gaussian15").exists()
        assert widget.model_state.showing_missing
    finally:
        mirror.close()
