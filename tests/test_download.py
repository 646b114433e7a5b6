"""Downloads (issue 15, and issue 12's size cap) against a real HTTP server on loopback.

The server serves files the tests make (the real architecture, seeded random
weights, the authors' key layout), answers HTTP Range requests and can cut a
connection after N bytes. The Google Drive path is a thin adapter over gdown;
here it is exercised with a stand-in for the gdown module (its two calls), never
against Google Drive.
"""

from __future__ import annotations

import collections
import hashlib
import http.server
import json
import re
import socket
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from napari_clipdenoise.cli import main
from napari_clipdenoise.errors import DenoiseCancelled, ModelNotInstalledError
from napari_clipdenoise.model import download
from napari_clipdenoise.model.download import DownloadError, OfflineError, download_model, downloadable_models
from napari_clipdenoise.model.registry import install_model, installed_models, load_model
from napari_clipdenoise.model.testing import write_reference_checkpoint

#: Tiny torch work on 2 shared cores: one thread is several times faster.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Server:
    """Files on loopback with Range support; ``cuts[path]`` = how many responses to cut after ``cut_at`` bytes."""

    def __init__(self, files: dict[str, bytes], *, content_length: bool = True):
        self.files = dict(files)
        self.cuts = collections.Counter()
        self.cut_at = 0
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                start = 0
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if wanted and self.headers.get("If-Range") in (None, etag):
                    start = int(wanted.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("ETag", etag)
                if content_length:
                    self.send_header("Content-Length", str(len(body) - start))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                part = body[start:]
                if outer.cuts[self.path] > 0:
                    outer.cuts[self.path] -= 1
                    self.wfile.write(part[: outer.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(part)
                if not content_length:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a cut connection is the point, not an error
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def no_proxy_no_config(monkeypatch, tmp_path):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(download.MIRROR_ENV_VAR, raising=False)
    monkeypatch.delenv(download.MAX_SIZE_ENV_VAR, raising=False)
    monkeypatch.setenv(download.CONFIG_ENV_VAR, str(tmp_path / "no-config.toml"))


@pytest.fixture
def refused_url():
    """A loopback port where nothing listens (connection refused at once)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def blackhole_url():
    """A loopback listener whose accept queue is full: new connections hang, like a firewall that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/"
    for sock in [*fillers, listener]:
        sock.close()


@pytest.fixture
def no_google_drive(monkeypatch, refused_url):
    """The registry's Google Drive fallback points at a refused loopback port: no test may reach the internet."""
    monkeypatch.setattr(download, "GDRIVE_PROBE_URL", refused_url)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The authors' layout of the gaussian15 and ldct checkpoints (random weights), and another RGB one."""
    folder = tmp_path_factory.mktemp("release")
    write_reference_checkpoint(folder / "synthetic" / "net_g_latest.pth", 3, seed=21)
    write_reference_checkpoint(folder / "LDCT" / "net_g_latest.pth", 1, seed=22)
    write_reference_checkpoint(folder.parent / "replaced.pth", 3, seed=99)
    return folder


@pytest.fixture
def mirror(release, monkeypatch, no_google_drive):
    files = {
        "/models/gaussian15.pth": (release / "synthetic" / "net_g_latest.pth").read_bytes(),
        "/models/ldct.pth": (release / "LDCT" / "net_g_latest.pth").read_bytes(),
    }
    with Server(files) as server:
        monkeypatch.setenv(download.MIRROR_ENV_VAR, f"{server.url}/models")
        yield server


def _partials(cache: Path) -> list[str]:
    """What a download left in the cache's .downloads folder (lock files included)."""
    folder = cache / download.PARTIAL_FOLDER
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_installs_like_import_and_records_the_first_digest(mirror, isolated_model_cache, capsys):
    payload = mirror.files["/models/gaussian15.pth"]
    seen = []
    path = download_model("gaussian15", progress=lambda done, total: seen.append((done, total)))
    assert path == isolated_model_cache / "gaussian15.safetensors" and installed_models() == ["gaussian15"]
    assert seen[-1] == (len(payload), len(payload))
    model = load_model("gaussian15")
    assert model.metadata["source_sha256"] == hashlib.sha256(payload).hexdigest()
    record = json.loads((isolated_model_cache / download.DIGESTS_FILE).read_text())["gaussian15"]
    assert record["sha256"] == hashlib.sha256(payload).hexdigest() and record["source"].endswith("gaussian15.pth")
    assert ("/models/gaussian15.safetensors", None) in mirror.requests, "the converted file was looked for first"
    assert _partials(isolated_model_cache) == []
    # the command line: an installed model is not downloaded again; --overwrite does, checked against the record
    before = len(mirror.requests)
    assert main(["models", "download", "gaussian15"]) == 0 and len(mirror.requests) == before
    assert main(["models", "download", "gaussian15", "--overwrite"]) == 0
    assert "matches the first download" in capsys.readouterr().err


def test_a_changed_file_is_refused_against_the_recorded_digest(mirror, release, isolated_model_cache):
    download_model("gaussian15")
    original = (isolated_model_cache / "gaussian15.safetensors").read_bytes()
    mirror.files["/models/gaussian15.pth"] = (release.parent / "replaced.pth").read_bytes()
    with pytest.raises(DownloadError, match="first download of 'gaussian15'.*--sha256"):
        download_model("gaussian15", overwrite=True)
    assert (isolated_model_cache / "gaussian15.safetensors").read_bytes() == original, "nothing replaced"
    new_digest = hashlib.sha256(mirror.files["/models/gaussian15.pth"]).hexdigest()
    download_model("gaussian15", overwrite=True, sha256=new_digest)  # accepting the new file explicitly
    assert load_model("gaussian15").metadata["source_sha256"] == new_digest


def test_hash_mismatch_installs_nothing(mirror, isolated_model_cache, capsys):
    with pytest.raises(DownloadError, match="expected 0000"):
        download_model("gaussian15", sha256="0" * 64)
    assert installed_models() == [] and _partials(isolated_model_cache) == []
    assert main(["models", "download", "ldct", "--sha256", "f" * 64]) == 1
    assert "nothing was installed" in capsys.readouterr().err and installed_models() == []


def test_resume_after_a_cut_connection(mirror, isolated_model_cache):
    payload = mirror.files["/models/gaussian15.pth"]
    mirror.cut_at = len(payload) // 3
    mirror.cuts["/models/gaussian15.pth"] = 1
    download_model("gaussian15")
    ranges = [r for p, r in mirror.requests if p == "/models/gaussian15.pth"]
    assert ranges == [None, f"bytes={len(payload) // 3}-"], "the second request resumed where the first was cut"
    assert load_model("gaussian15").metadata["source_sha256"] == hashlib.sha256(payload).hexdigest()


def test_a_download_cut_too_often_resumes_on_the_next_run(mirror, isolated_model_cache):
    payload = mirror.files["/models/gaussian15.pth"]
    mirror.cut_at = len(payload) // 10
    mirror.cuts["/models/gaussian15.pth"] = download.RESUMES + 1
    with pytest.raises(DownloadError, match="running the same command again resumes"):
        download_model("gaussian15")
    assert installed_models() == [], "never a partial model"
    kept = [p for p in _partials(isolated_model_cache) if not p.endswith(".json")]
    assert len(kept) == 1 and kept[0].endswith(".part.pth")
    size = (isolated_model_cache / download.PARTIAL_FOLDER / kept[0]).stat().st_size
    assert size == (download.RESUMES + 1) * (len(payload) // 10)
    mirror.requests.clear()
    download_model("gaussian15")
    assert mirror.requests[-1] == ("/models/gaussian15.pth", f"bytes={size}-")
    assert load_model("gaussian15").metadata["source_sha256"] == hashlib.sha256(payload).hexdigest()
    assert _partials(isolated_model_cache) == []


@pytest.mark.parametrize("content_length", [True, False])
def test_the_size_cap(release, monkeypatch, isolated_model_cache, no_google_drive, content_length):
    payload = (release / "synthetic" / "net_g_latest.pth").read_bytes()
    with Server({"/m/gaussian15.pth": payload}, content_length=content_length) as server:
        monkeypatch.setenv(download.MIRROR_ENV_VAR, f"{server.url}/m")
        with pytest.raises(DownloadError, match="more than the download cap of 1.0 MiB.*--max-size"):
            download_model("gaussian15", max_bytes=2**20)
        monkeypatch.setenv(download.MAX_SIZE_ENV_VAR, "2")
        with pytest.raises(DownloadError, match="cap of 2.0 MiB"):
            download_model("gaussian15")
        # models import URL is capped the same way (issue 12: URL downloads have a size cap)
        with pytest.raises(DownloadError, match="download cap"):
            install_model(f"{server.url}/m/gaussian15.pth", "web")
        if content_length:
            monkeypatch.setenv(download.MAX_SIZE_ENV_VAR, str(len(payload) / 2**20 + 1))
            download_model("gaussian15")
    assert installed_models() == (["gaussian15"] if content_length else []) and _partials(isolated_model_cache) == []


@pytest.mark.parametrize("kind", ["refused", "blackhole"])
def test_offline_is_reported_within_two_seconds_with_the_offline_options(
    kind, refused_url, blackhole_url, monkeypatch, isolated_model_cache, capsys
):
    url = refused_url if kind == "refused" else blackhole_url
    monkeypatch.setattr(download, "GDRIVE_PROBE_URL", url)  # the registry's own source: the authors' Google Drive
    start = time.perf_counter()
    with pytest.raises(OfflineError) as info:
        download_model("gaussian15")
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "clipdenoise models import FILE --name gaussian15" in message
    assert "clipdenoise models download gaussian15 --to DIR" in message and "CLIPDENOISE_CACHE_DIR" in message
    assert elapsed < 2.0, f"offline error after {elapsed:.2f} s"
    print(f"{kind}: offline error after {elapsed:.2f} s")
    monkeypatch.setenv(download.MIRROR_ENV_VAR, url)  # a facility mirror that is down
    assert main(["models", "download", "gaussian15"]) == 1
    assert "offline" in capsys.readouterr().err and installed_models() == []


def test_cancel_stops_and_leaves_nothing(mirror, isolated_model_cache):
    event = threading.Event()
    with pytest.raises(DenoiseCancelled):
        download_model("gaussian15", progress=lambda done, total: event.set(), cancel=event)
    calls = []
    with pytest.raises(DenoiseCancelled):
        download_model("ldct", cancel=lambda: calls.append(1) or len(calls) > 2)
    assert installed_models() == [] and _partials(isolated_model_cache) == []


def test_download_to_a_folder_then_use_it_offline(mirror, tmp_path, monkeypatch, refused_url, capsys):
    carried = tmp_path / "carried"
    assert main(["models", "download", "ldct", "--to", str(carried)]) == 0
    assert [p.name for p in carried.glob("*.safetensors")] == ["ldct.safetensors"]
    assert "copy" in capsys.readouterr().out and installed_models() == [], "--to leaves the cache alone"
    # "another machine", offline: its own empty cache, the copied folder as a mirror (checked against the
    # digest of the authors' file that the converted file records)
    offline_cache = tmp_path / "offline-cache"
    monkeypatch.setenv("CLIPDENOISE_CACHE_DIR", str(offline_cache))
    monkeypatch.setenv(download.MIRROR_ENV_VAR, f"{refused_url};{carried}")
    digest = hashlib.sha256(mirror.files["/models/ldct.pth"]).hexdigest()
    path = download_model("ldct", sha256=digest)
    assert path == offline_cache / "ldct.safetensors" and load_model("ldct").in_channels == 1
    # or the copied folder used as the cache itself
    monkeypatch.setenv("CLIPDENOISE_CACHE_DIR", str(carried))
    assert load_model("ldct").metadata["source_sha256"] == digest


def test_nothing_downloads_implicitly(mirror):
    with pytest.raises(ModelNotInstalledError):
        load_model("gaussian15")
    assert "gaussian15" in downloadable_models() and "ldct" in downloadable_models()
    assert mirror.requests == []


def test_one_download_of_a_name_at_a_time(mirror, isolated_model_cache):
    import fcntl

    folder = isolated_model_cache / download.PARTIAL_FOLDER
    folder.mkdir(parents=True)
    with open(folder / "gaussian15.lock", "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another download of 'gaussian15'"):
            download_model("gaussian15")
    assert mirror.requests == []
    download_model("ldct")  # another name is not held up; the lock file goes with its download
    assert _partials(isolated_model_cache) == ["gaussian15.lock"]


def test_names_are_checked_and_all_means_every_release(mirror, capsys, isolated_model_cache):
    assert main(["models", "download", "../x"]) == 2
    assert main(["models", "download", "gaussian15", "ldct", "--sha256", "0" * 64]) == 2
    assert main(["models", "download", "--check", "gaussian15"]) == 0 and "reachable" in capsys.readouterr().out
    assert main(["models", "download", "all"]) == 1  # srgb is neither on the mirror nor reachable elsewhere
    err = capsys.readouterr().err
    assert "srgb" in err and sorted(installed_models()) == ["gaussian15", "ldct"]


def test_config_file_mirror_and_direct_link(release, tmp_path, monkeypatch, isolated_model_cache, no_google_drive):
    payload = (release / "synthetic" / "net_g_latest.pth").read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    with Server({"/direct/net_g_latest.pth": payload}) as server:
        config = tmp_path / "models.toml"
        config.write_text(f'[models.mine]\nurl = "{server.url}/direct/net_g_latest.pth"\nsha256 = "{digest}"\n')
        monkeypatch.setenv(download.CONFIG_ENV_VAR, str(config))
        assert "mine" in downloadable_models()
        download_model("mine")
        assert load_model("mine").metadata["source_sha256"] == digest
        config.write_text(f'[models.mine]\nurl = "{server.url}/direct/net_g_latest.pth"\nsha256 = "{"0" * 64}"\n')
        with pytest.raises(DownloadError, match="expected 0000"):
            download_model("mine", overwrite=True)
        config.write_text("mirrors = 3\n")
        with pytest.raises(DownloadError, match="'mirrors' must be a list"):
            download_model("other")


# ---------------------------------------------------------------- the Google Drive adapter (gdown stand-in)
def _stand_in_gdown(release: Path, calls: list) -> types.ModuleType:
    """The two gdown calls the adapter makes, served from a local copy of the release folder."""
    entry = collections.namedtuple("GoogleDriveFileToDownload", ("id", "path", "local_path"))
    module = types.ModuleType("gdown")

    def download_folder(url=None, skip_download=False, **kwargs):
        calls.append(("download_folder", url, skip_download))
        return [entry(str(p.relative_to(release)), str(p.relative_to(release)), None) for p in release.rglob("*.pth")]

    def download_file(id=None, output=None, progress=None, resume=False, cancel=None, **kwargs):
        calls.append(("download", id, resume))
        data = (release / id).read_bytes()
        with open(output, "wb") as handle:
            for start in range(0, len(data), 1 << 20):
                if cancel is not None and cancel.is_set():
                    raise RuntimeError("cancelled")
                handle.write(data[start : start + (1 << 20)])
                if progress is not None:
                    progress(min(start + (1 << 20), len(data)), len(data))
        return output

    module.download_folder, module.download = download_folder, download_file
    return module


def test_the_google_drive_adapter_picks_each_models_file(release, monkeypatch, isolated_model_cache):
    calls = []
    with Server({}) as server:
        monkeypatch.setattr(download, "GDRIVE_PROBE_URL", server.url + "/")
        monkeypatch.setitem(sys.modules, "gdown", _stand_in_gdown(release, calls))
        download_model("ldct")
        download_model("gaussian15")
    assert load_model("ldct").in_channels == 1 and load_model("gaussian15").in_channels == 3
    assert ("download", "LDCT/net_g_latest.pth", True) in calls and (
        "download",
        "synthetic/net_g_latest.pth",
        True,
    ) in calls
    assert all(call[1] == download.REGISTRY["ldct"].source for call in calls if call[0] == "download_folder")
    with pytest.raises(DownloadError, match="cannot tell which file"):
        download.choose_release_file("srgb", [("1", "synthetic/net_g_latest.pth"), ("2", "LDCT/net_g_latest.pth")])
    assert download.choose_release_file("srgb", [("7", "sRGB/net_g_latest.pth"), ("8", "sRGB/net_g_100.pth")])[0] == "7"


def test_without_gdown_the_error_names_the_extra(monkeypatch, isolated_model_cache):
    with Server({}) as server:
        monkeypatch.setattr(download, "GDRIVE_PROBE_URL", server.url + "/")
        monkeypatch.setitem(sys.modules, "gdown", None)
        with pytest.raises(DownloadError, match=r"'download' extra.*torch==2.13.0"):
            download_model("srgb")
    assert installed_models() == []


def test_partials_of_a_killed_download_are_not_models(mirror, isolated_model_cache):
    """A download killed mid-way leaves only a resumable partial in .downloads/, never a model file."""
    payload = mirror.files["/models/gaussian15.pth"]
    folder = isolated_model_cache / download.PARTIAL_FOLDER
    folder.mkdir(parents=True)
    key = re.sub(r"[^A-Za-z0-9]+", "-", "/models/gaussian15.pth")[-40:]
    part = folder / f"gaussian15.{key}.part.pth"
    part.write_bytes(payload[:1000])
    state = {"url": f"{mirror.url}/models/gaussian15.pth", "etag": None, "last_modified": None, "total": len(payload)}
    Path(str(part) + ".json").write_text(json.dumps(state))
    assert installed_models() == []
    download_model("gaussian15")
    assert ("/models/gaussian15.pth", "bytes=1000-") in mirror.requests
    assert hashlib.sha256(payload).hexdigest() == load_model("gaussian15").metadata["source_sha256"]
