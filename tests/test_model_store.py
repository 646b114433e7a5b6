"""The model store (issue 12, class 2): names checked everywhere, dots, concurrent and killed imports, umask.

Concurrency and kills use real processes; the kill happens while a real HTTP
server on loopback holds the import in the middle of its download.
"""

from __future__ import annotations

import http.server
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_clipdenoise.cli import main
from napari_clipdenoise.model.registry import (
    STAGING_PREFIX,
    install_model,
    installed_models,
    installed_path,
    load_model,
    remove_model,
)
from napari_clipdenoise.model.sources import is_valid_name
from napari_clipdenoise.model.testing import write_project_checkpoint, write_reference_checkpoint

REPO = Path(__file__).resolve().parents[1]


#: Tiny torch work on 2 shared cores: one thread is several times faster.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _env(cache: Path) -> dict:
    env = os.environ.copy()
    env["CLIPDENOISE_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def victims(tmp_path, isolated_model_cache):
    """Files a path-like 'name' would reach: an absolute path, one next to the cache, one in the working folder."""
    outside = tmp_path / "precious.safetensors"
    beside = isolated_model_cache.parent / "beside.safetensors"
    for path in (outside, beside):
        path.write_bytes(b"user data, not a model")
    return {"absolute": (str(outside.with_suffix("")), outside), "relative": ("../beside", beside)}


@pytest.mark.parametrize("action", ["remove", "path", "info"])
@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_models_commands_refuse_paths_and_touch_nothing(action, kind, victims, capsys):
    text, victim = victims[kind]
    assert main(["models", action, text]) == 2
    err = capsys.readouterr().err
    assert "clipdenoise: error:" in err and ("not a path" in err or "neither a model name" in err), err
    assert victim.read_bytes() == b"user data, not a model", "nothing outside the cache is touched"


def test_python_api_refuses_paths(victims):
    for text, victim in victims.values():
        with pytest.raises(ValueError, match="not valid"):
            remove_model(text)
        with pytest.raises(ValueError, match="not valid"):
            installed_path(text)
        assert victim.exists()


def test_console_script_remove_of_an_absolute_path_deletes_nothing(victims, isolated_model_cache):
    text, victim = victims["absolute"]
    result = subprocess.run(
        [sys.executable, "-m", "napari_clipdenoise.cli", "models", "remove", text],
        capture_output=True,
        text=True,
        env=_env(isolated_model_cache),
        timeout=120,
    )
    assert result.returncode == 2 and "not a path" in result.stderr and "Traceback" not in result.stderr
    assert victim.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(alphabet="/.ab~\\-_ ", min_size=1, max_size=12),
        st.from_regex(r"(\.\./|/|~/|\./)[a-z.]{1,8}", fullmatch=True),
    )
)
def test_no_string_that_is_not_a_name_reaches_the_file_system(victims, capsys, text):
    if is_valid_name(text):
        return
    assert main(["models", "remove", "--", text]) == 2
    assert main(["models", "path", "--", text]) == 2
    capsys.readouterr()
    assert all(victim.exists() for _, victim in victims.values())


def test_names_with_a_dot_work_everywhere(tmp_path, rgb_checkpoint, capsys, isolated_model_cache, one_torch_thread):
    import imageio.v3 as iio

    for name in ("v1.2", "lab.model.final"):
        assert main(["models", "import", str(rgb_checkpoint), "--name", name]) == 0
        target = isolated_model_cache / f"{name}.safetensors"
        assert target.is_file()
        assert main(["models", "path", name]) == 0 and capsys.readouterr().out.strip().endswith(str(target))
        assert main(["models", "info", name]) == 0 and str(target) in capsys.readouterr().out
        assert load_model(name).name == name
    assert installed_models() == ["lab.model.final", "v1.2"]
    assert main(["models", "list"]) == 0 and "v1.2" in capsys.readouterr().out
    image = tmp_path / "image.png"
    iio.imwrite(image, np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    assert main(["denoise", str(image), "--model", "v1.2", "-o", str(tmp_path / "out"), "--tile-size", "32"]) == 0
    assert (tmp_path / "out" / "image_denoised.png").is_file()
    assert main(["models", "remove", "v1.2"]) == 0
    assert installed_models() == ["lab.model.final"]


_RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from napari_clipdenoise.model.registry import install_model
    source, go = sys.argv[1], Path(sys.argv[2])
    import torch  # paid before the start line, so both start installing together
    torch.set_num_threads(1)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    try:
        install_model(source, "shared")
    except FileExistsError as exc:
        print("REFUSED", exc, flush=True)
        sys.exit(3)
    print("INSTALLED", flush=True)
    """
)


def test_two_concurrent_imports_of_one_name_cannot_both_succeed(tmp_path, isolated_model_cache):
    from napari_clipdenoise.model.checkpoints import state_dict_sha256

    sources = [tmp_path / f"model_{seed}.safetensors" for seed in (1, 2)]
    networks = [write_project_checkpoint(path, 3, seed=seed) for seed, path in zip((1, 2), sources, strict=True)]
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(isolated_model_cache),
        )
        for path in sources
    ]
    for racer in racers:
        assert racer.stdout.readline().strip() == "ready"
    go.touch()
    results = [racer.communicate(timeout=300) for racer in racers]
    codes = [racer.returncode for racer in racers]
    assert sorted(codes) == [0, 3], results
    winner = codes.index(0)
    assert "while this import ran" in results[1 - winner][0] or "already installed" in results[1 - winner][0]
    installed = load_model("shared")
    assert installed.metadata["weights_sha256"] == state_dict_sha256(networks[winner].state_dict())
    assert not list(isolated_model_cache.glob(f"{STAGING_PREFIX}*")), "both staging folders are gone"


class _StallingServer:
    """Serves the first half of a file, then holds the connection open without sending more."""

    def __init__(self, payload: bytes):
        self.sent_half = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                outer.sent_half.set()
                outer.release.wait(60)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/net_g_latest.pth"

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_killed_import_leaves_nothing_that_lasts(tmp_path, isolated_model_cache, rgb_checkpoint):
    source = tmp_path / "net_g_latest.pth"
    write_reference_checkpoint(source, 3, seed=5)
    code = "import sys; from napari_clipdenoise.model.registry import install_model; install_model(sys.argv[1], 'x')"
    with _StallingServer(source.read_bytes()) as url:
        child = subprocess.Popen([sys.executable, "-c", code, url], env=_env(isolated_model_cache))
        try:
            deadline = time.monotonic() + 120
            partial = []
            while time.monotonic() < deadline and not partial:
                partial = [p for p in isolated_model_cache.glob(f"{STAGING_PREFIX}*/*.pth") if p.stat().st_size]
                time.sleep(0.05)
            assert partial, "the import got into its download"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == -signal.SIGKILL
    assert installed_models() == [] and not installed_path("x").exists(), "no model, not even a partial one"
    # the next install (any name) removes what the killed one left
    install_model(rgb_checkpoint, "other")
    assert installed_models() == ["other"]
    leftovers = [p.name for p in isolated_model_cache.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


@pytest.mark.parametrize("umask", [0o002, 0o022])
def test_installed_files_follow_the_umask(rgb_checkpoint, umask):
    previous = os.umask(umask)
    try:
        target = install_model(rgb_checkpoint, f"shared-{umask:o}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
