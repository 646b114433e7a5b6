"""Registry, cache folder, install (file and real HTTP on loopback) and load_model by name."""

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from napari_clipdenoise import REGISTRY, install_model, installed_models, load_model
from napari_clipdenoise.errors import CheckpointError, ModelNotInstalledError
from napari_clipdenoise.model.registry import AUTHORS_RELEASE, cache_dir, installed_path
from napari_clipdenoise.model.testing import write_project_checkpoint, write_reference_checkpoint


def test_reference_models_are_registered():
    assert {"gaussian15", "srgb", "ldct"} <= set(REGISTRY)
    assert REGISTRY["ldct"].in_channels == 1 and REGISTRY["gaussian15"].in_channels == 3
    for entry in REGISTRY.values():
        assert entry.description and entry.noise and entry.source.startswith("https://")


def test_cache_folder_follows_the_environment(isolated_model_cache):
    assert cache_dir() == isolated_model_cache
    assert installed_models() == []


def test_uninstalled_model_says_what_to_get_and_how(isolated_model_cache):
    with pytest.raises(ModelNotInstalledError) as info:
        load_model("gaussian15")
    message = str(info.value)
    assert AUTHORS_RELEASE in message
    assert "clipdenoise models import" in message and "--name gaussian15" in message
    assert str(isolated_model_cache) in message


def test_uninstalled_model_fails_fast_without_torch(isolated_model_cache):
    code = (
        "import sys, napari_clipdenoise as n\n"
        "try:\n    n.load_model('srgb')\nexcept n.ModelNotInstalledError as e:\n    print('HINT', 'models import' in str(e))\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=True
    )
    elapsed = time.perf_counter() - start
    assert "HINT True" in out.stdout
    assert "TORCH False" in out.stdout, "the lookup of a missing model must not pay for importing torch"
    print(f"missing-model error in a fresh interpreter: {elapsed:.2f} s")


def test_unknown_name_lists_known_ones():
    with pytest.raises(ModelNotInstalledError, match="gaussian15.*ldct|Known names"):
        load_model("no_such_model")
    with pytest.raises(CheckpointError, match="not found"):
        load_model("missing/file.pth")


def test_install_reference_checkpoint_and_load_by_name(tmp_path):
    source = tmp_path / "net_g_latest.pth"
    network = write_reference_checkpoint(source, 3, seed=9)
    target = install_model(source, "gaussian15")
    assert target == installed_path("gaussian15") and target.suffix == ".safetensors"
    assert installed_models() == ["gaussian15"]
    model = load_model("gaussian15")
    assert model.name == "gaussian15"
    assert model.metadata["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert model.metadata["noise"] == REGISTRY["gaussian15"].noise
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.network(x), network(x), atol=1e-6)
    with pytest.raises(FileExistsError, match="overwrite"):
        install_model(source, "gaussian15")
    install_model(source, "gaussian15", overwrite=True)


def test_install_rejects_wrong_channels_and_bad_files(tmp_path):
    gray = tmp_path / "gray.safetensors"
    write_project_checkpoint(gray, 1)
    with pytest.raises(CheckpointError, match="1-channel model but 'gaussian15' is a 3-channel"):
        install_model(gray, "gaussian15")
    install_model(gray, "ldct")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError):
        install_model(broken, "srgb")
    with pytest.raises(ValueError, match="model name"):
        install_model(gray, "../escape")
    assert installed_models() == ["ldct"]
    assert not [p for p in cache_dir().iterdir() if p.name.startswith(".")], "no staging files left"


class _Server:
    """A real HTTP server on loopback serving one payload, optionally lying about its length."""

    def __init__(self, payload: bytes, declared_length: int | None = None):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(declared_length or len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                outer.requests += 1

            def log_message(self, *args):
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/files/net_g_latest.pth"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_install_from_http_on_loopback(tmp_path):
    source = tmp_path / "net_g_latest.pth"
    write_reference_checkpoint(source, 3, seed=2)
    payload = source.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    seen = []
    with _Server(payload) as url:
        path = install_model(url, "srgb", sha256=digest, progress=lambda done, total: seen.append((done, total)))
    assert path.is_file() and seen[-1] == (len(payload), len(payload))
    assert load_model("srgb").metadata["installed_from"] == url

    with _Server(payload) as url, pytest.raises(CheckpointError, match="sha256"):
        install_model(url, "other", sha256="0" * 64)
    with (
        _Server(payload[: len(payload) // 3], declared_length=len(payload)) as url,
        pytest.raises((CheckpointError, OSError)),
    ):
        install_model(url, "truncated", timeout=5)
    assert installed_models() == ["srgb"]
    assert not [p for p in cache_dir().iterdir() if p.name.startswith(".")]


def test_load_model_from_path_and_device(rgb_checkpoint):
    model = load_model(rgb_checkpoint, device="cpu")
    assert model.in_channels == 3 and model.device.type == "cpu"
    assert not model.network.training
    assert model.sha256 and model.provenance()["name"] == "random_rgb"
    assert np.isfinite(model.network(torch.rand(1, 3, 16, 16)).detach().numpy()).all()
