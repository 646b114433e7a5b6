"""Downloading named models: mirrors a user or facility configures, or the authors' release.

Nothing here runs unless asked (``clipdenoise models download``, the Denoise
widget's Download button, :func:`download_model`): importing this module and
building a widget touch no network.

Where a model comes from, in this order:

1. mirrors: ``CLIPDENOISE_MODEL_MIRROR`` (one or more, separated by ``;``) and the
   ``mirrors`` list of the config file (``CLIPDENOISE_MODELS_CONFIG``, or
   ``models.toml`` in the user config folder). A mirror is an http(s) base URL or a
   local/shared folder holding ``<name>.safetensors`` (what ``models download --to
   DIR`` writes) or ``<name>.pth`` (the authors' file);
2. a direct link: the config file's ``[models.<name>] url`` (and ``sha256``), or
   the registry entry's ``url``;
3. the authors' Google Drive folder (the registry entry's ``source``), through the
   ``gdown`` client (optional extra ``download``). That path is a thin adapter over
   gdown and is tested only through the adapter, never against Google Drive.

Every download is resumable (HTTP ``Range``; a partial file waits in
``<cache>/.downloads/``), capped in size, reports progress, checks a sha256 (a
pinned one, the one given, or the one recorded at the first download) and is then
validated, converted and installed exactly like ``models import``
(:func:`~napari_clipdenoise.model.registry.install_model`), so a partial or wrong
file never becomes a model. An unreachable network is reported within about two
seconds with the offline options.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, DenoiseCancelled
from .cache import CACHE_ENV_VAR, cache_dir
from .catalog import BUNDLED, REGISTRY
from .fetch import (  # noqa: F401 (the size cap's names stay importable from here, where the docs point)
    CONNECT_TIMEOUT_S,
    DEFAULT_MAX_BYTES,
    MAX_SIZE_ENV_VAR,
    READ_TIMEOUT_S,
    RESUMES,
    DownloadError,
    OfflineError,
    _cancelled,
    _NotAtSource,
    _too_large,
    _TooLarge,
    fetch_url,
    max_download_bytes,
    probe,
)
from .names import validate_model_name

MIRROR_ENV_VAR = "CLIPDENOISE_MODEL_MIRROR"
CONFIG_ENV_VAR = "CLIPDENOISE_MODELS_CONFIG"
#: Contacted (connect only) before gdown runs, so an offline machine is told within CONNECT_TIMEOUT_S.
GDRIVE_PROBE_URL = "https://drive.google.com/"
DIGESTS_FILE = "download-digests.json"
PARTIAL_FOLDER = ".downloads"
EXTRA_HINT = "pip install 'napari-clipdenoise[download]' torch==2.13.0"

#: Words that pick each model's file in the authors' release folder (the layout their test scripts
#: use: pretrained_models/{synthetic,sRGB,LDCT}/net_g_latest.pth).
RELEASE_KEYWORDS = {"gaussian15": ("synthetic", "gaussian", "gauss"), "srgb": ("srgb",), "ldct": ("ldct", "ct")}


@dataclass(frozen=True)
class Source:
    """One place a model can come from: ``folder`` (a file path), ``http`` (a URL) or ``gdrive`` (a folder URL)."""

    kind: str
    location: str
    sha256: str | None = None  # pinned for this source (config file or registry)

    @property
    def label(self) -> str:
        if self.kind == "folder":
            return f"mirror folder file {self.location}"
        if self.kind == "gdrive":
            return f"the authors' Google Drive folder ({self.location})"
        return self.location


# ----------------------------------------------------------------------------- configuration
def config_path() -> Path:
    """The config file naming mirrors and direct links (it need not exist)."""
    override = os.environ.get(CONFIG_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-clipdenoise")) / "models.toml"


def read_config() -> dict:
    """The config file's content (``{}`` when there is none); DownloadError naming the file when it is invalid."""
    import tomllib

    path = config_path()
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DownloadError(f"cannot read the models config file {path}: {exc}") from None
    mirrors = data.get("mirrors", [])
    models = data.get("models", {})
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise DownloadError(f"{path}: 'mirrors' must be a list of URLs or folders, got {mirrors!r}")
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise DownloadError(f"{path}: [models.NAME] tables must hold url = '...' and optionally sha256 = '...'")
    return data


def configured_mirrors() -> list[str]:
    """Mirrors from ``CLIPDENOISE_MODEL_MIRROR`` (``;``-separated) first, then the config file's."""
    from_env = [m.strip() for m in os.environ.get(MIRROR_ENV_VAR, "").split(";") if m.strip()]
    return from_env + [m for m in read_config().get("mirrors", []) if m not in from_env]


def download_sources(name: str) -> list[Source]:
    """Where ``name`` would be fetched from, in the order tried (nothing is contacted)."""
    validate_model_name(name)
    sources = []
    for mirror in configured_mirrors():
        for filename in (f"{name}.safetensors", f"{name}.pth"):
            if urllib.parse.urlparse(mirror).scheme in ("http", "https"):
                sources.append(Source("http", mirror.rstrip("/") + "/" + urllib.parse.quote(filename)))
            else:
                sources.append(Source("folder", str(Path(mirror).expanduser() / filename)))
    link = read_config().get("models", {}).get(name, {})
    entry = REGISTRY.get(name)
    if link.get("url"):
        sources.append(Source("http", str(link["url"]), link.get("sha256")))
    if entry is not None and entry.url:
        sources.append(Source("http", entry.url, entry.sha256))
    if entry is not None and "drive.google.com" in (entry.source or ""):
        sources.append(Source("gdrive", entry.source, entry.sha256))
    return sources


def downloadable_models() -> list[str]:
    """Names :func:`download_model` can fetch: registry models with a release, and any model a mirror may hold.

    Bundled models are not listed (they ship inside the package). This reads the
    configuration only; whether a source is reachable is found out by downloading.
    """
    names = [n for n, e in REGISTRY.items() if n not in BUNDLED and (e.url or "drive.google.com" in (e.source or ""))]
    try:
        links = read_config().get("models", {})
    except DownloadError:
        links = {}
    return names + sorted(n for n in links if n not in names and n not in BUNDLED)


def offline_options(name: str) -> str:
    return (
        "Offline options:\n"
        f"  - on a machine that is online: clipdenoise models download {name} --to DIR, copy DIR here,"
        f" then set {CACHE_ENV_VAR}=DIR (or {MIRROR_ENV_VAR}=DIR and run this command again);\n"
        f"  - clipdenoise models import FILE --name {name} with the authors' net_g_*.pth copied here;\n"
        f"  - set {CACHE_ENV_VAR} to a (shared) folder that already holds {name}.safetensors."
    )


def _import_gdown():
    try:
        import gdown
    except ImportError:
        raise DownloadError(
            "downloading from the authors' Google Drive folder needs the optional 'download' extra (the gdown"
            f" client): {EXTRA_HINT}. Or configure a mirror ({MIRROR_ENV_VAR}) or use clipdenoise models import FILE"
        ) from None
    return gdown


def choose_release_file(name: str, files: list[tuple[str, str]]) -> tuple[str, str]:
    """Pick ``name``'s checkpoint among the release folder's ``(id, path)`` files (DownloadError if unclear)."""
    keywords = set(RELEASE_KEYWORDS.get(name, (name.lower(),)))

    def words(path: str) -> set[str]:
        return set(re.split(r"[^a-z0-9]+", path.lower()))

    checkpoints = [f for f in files if f[1].lower().endswith((".pth", ".pt"))]
    hits = [f for f in checkpoints if keywords & words(f[1])]
    if len(hits) > 1:
        hits = [f for f in hits if "latest" in words(f[1])] or hits
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(path for _, path in files[:20]) or "no files"
    raise DownloadError(
        f"cannot tell which file of the authors' release folder is {name!r} (found: {listing}). Download it by"
        f" hand and run: clipdenoise models import FILE --name {name}"
    )


def _fetch_gdrive(source: Source, name: str, folder: Path, progress, cancel, cap: int, connect_timeout: float) -> Path:
    probe(GDRIVE_PROBE_URL, connect_timeout=connect_timeout)
    gdown = _import_gdown()
    event = cancel if isinstance(cancel, threading.Event) else threading.Event()
    timeouts = (connect_timeout, READ_TIMEOUT_S)
    try:
        listing = gdown.download_folder(url=source.location, skip_download=True, quiet=True, timeout=timeouts)
    except Exception as exc:  # gdown raises its own errors and requests' ones
        raise DownloadError(f"could not list the authors' Google Drive folder {source.location}: {exc}") from None
    file_id, _ = choose_release_file(name, [(item.id, item.path) for item in listing or []])
    output = folder / f"{name}.gdrive.pth"

    def on_progress(done: int, total: int | None) -> None:
        if _cancelled(cancel):
            event.set()
            raise DenoiseCancelled(f"download of {name} cancelled")
        if done > cap or (total or 0) > cap:
            raise _too_large(source.location, max(done, total or 0), cap)
        if progress is not None:
            progress(done, total or 0)

    try:
        gdown.download(
            id=file_id,
            output=str(output),
            quiet=True,
            resume=True,
            progress=on_progress,
            timeout=timeouts,
            retries=RESUMES,
            cancel=event,
        )
    except (DownloadError, DenoiseCancelled):
        raise
    except Exception as exc:
        if event.is_set() or type(exc).__name__ == "DownloadCancelled":
            raise DenoiseCancelled(f"download of {name} cancelled") from None
        raise DownloadError(
            f"the Google Drive download of {name} failed: {exc}. Running the same command again resumes it"
        ) from None
    return output


# ----------------------------------------------------------------------------- digests
def _digests_path(folder: Path) -> Path:
    return folder / DIGESTS_FILE


def recorded_digest(name: str, *, cache: str | os.PathLike | None = None) -> dict | None:
    """What the first download of ``name`` recorded (``sha256``, ``source``, ``date``), or None."""
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    try:
        data = json.loads(_digests_path(folder).read_text())
    except (OSError, ValueError):
        return None
    record = data.get(name) if isinstance(data, dict) else None
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None


def _record_digest(folder: Path, name: str, digest: str, source: str) -> None:
    path = _digests_path(folder)
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[name] = {"sha256": digest, "source": source, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _digests_of(path: Path) -> tuple[str, str | None]:
    """The file's sha256, and for a converted project file the digest of the authors' file it came from."""
    from .checkpoints import file_sha256, read_project_metadata  # imports torch: only once there is a file

    original = None
    if path.suffix == ".safetensors":
        try:
            original = read_project_metadata(path).get("source_sha256")
        except CheckpointError:
            original = None
    return file_sha256(path), (original.lower() if isinstance(original, str) else None)


# ----------------------------------------------------------------------------- the API
def download_model(
    name: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    sha256: str | None = None,
    to: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_bytes: int | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Download the model ``name``, validate it like ``models import`` and install it; return the installed file.

    Parameters
    ----------
    name : str
        A registry name (``gaussian15``, ``srgb``, ``ldct``) or a name a configured mirror holds.
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` (``total_bytes`` is 0 when unknown).
    cancel : callable or threading.Event, optional
        Checked between chunks; when it says so the download stops, its partial file is
        removed and :class:`~napari_clipdenoise.errors.DenoiseCancelled` is raised.
    sha256 : str, optional
        The digest the file must have. Without it a pinned digest is used where one
        is known, else the digest recorded at the first download (which is recorded
        now if there is none).
    to : path-like, optional
        Install into this folder instead of the model cache (``models download --to DIR``).
    overwrite : bool
        Replace an installed model of that name; otherwise an installed model is
        returned as it is, and nothing is downloaded.
    max_bytes : int, optional
        Size cap (default: ``CLIPDENOISE_MAX_DOWNLOAD_MB`` or 1 GiB).
    connect_timeout : float
        Seconds to reach a server before it counts as unreachable.
    report : callable, optional
        Called with one line of text per step (where from, what was recorded).

    Raises
    ------
    DownloadError
        Nothing could be downloaded or the file is not the expected model; nothing
        was installed. :class:`OfflineError` (a DownloadError) when no source could
        be reached; its message names the offline options.
    DenoiseCancelled
        ``cancel`` said so; nothing is left behind.
    """
    try:
        validate_model_name(name)
    except ValueError as exc:
        raise DownloadError(str(exc)) from None
    say = report or (lambda line: None)
    folder = Path(to).expanduser() if to is not None else cache_dir()
    target = folder / f"{name}.safetensors"
    if target.is_file() and not overwrite:
        say(f"{name} is already installed at {target}")
        return target
    sources = download_sources(name)
    if not sources:
        known = ", ".join(downloadable_models()) or "none"
        raise DownloadError(
            f"there is nowhere to download {name!r} from: it is not a registry model with a release and no mirror"
            f" is configured ({MIRROR_ENV_VAR} or {config_path()}). Downloadable: {known}"
        )
    cap = max_bytes or max_download_bytes()
    partial = folder / PARTIAL_FOLDER
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {partial}: {exc}; set {CACHE_ENV_VAR} to a writable folder") from None
    lock_path = partial / f"{name}.lock"
    lock = _hold_lock(lock_path)
    if lock is None:
        raise DownloadError(f"another download of {name!r} into {folder} is running; wait for it to finish")
    try:
        failures: list[DownloadError] = []
        unreachable: dict[str, OfflineError] = {}  # a server that did not answer is not asked again
        for source in sources:
            server = _server_of(source)
            if server in unreachable:
                failures.append(unreachable[server])
                continue
            try:
                local = _fetch(source, name, partial, progress, cancel, cap, connect_timeout, say)
            except OfflineError as exc:
                unreachable[server] = exc
                failures.append(exc)
                continue
            except _NotAtSource as exc:
                failures.append(exc)
                continue
            except (DenoiseCancelled, _TooLarge):
                _remove_partials(partial, name)
                raise
            try:
                return _verify_and_install(local, source, name, folder, sha256, overwrite, say)
            finally:
                if source.kind != "folder":
                    _remove_partials(partial, name)
        offline = [f for f in failures if isinstance(f, OfflineError)]
        if offline and len(offline) == len(failures):
            reasons = "; ".join(dict.fromkeys(str(f) for f in offline))
            raise OfflineError(
                f"cannot download {name!r}: {reasons}. This machine looks offline or the network is blocked;"
                f" nothing was downloaded.\n{offline_options(name)}"
            )
        reasons = "; ".join(str(f) for f in failures)
        raise DownloadError(f"{name!r} was found at none of its sources: {reasons}.\n{offline_options(name)}")
    finally:
        lock_path.unlink(missing_ok=True)  # still held: a waiting process re-checks the inode (_hold_lock)
        lock.close()
        with contextlib.suppress(OSError):
            partial.rmdir()  # only if empty: a partial download waiting to resume stays


def _hold_lock(path: Path):
    """An open, exclusively locked ``path`` (the same file that is at ``path`` now), or None when it is busy."""
    from .registry import _lock_exclusive

    while True:
        handle = open(path, "ab")  # noqa: SIM115 - the caller closes it
        if _lock_exclusive(handle, blocking=False) is False:
            handle.close()
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return handle
        handle.close()  # the holder removed it after we opened it: try the new one


def _server_of(source: Source) -> str:
    if source.kind == "folder":
        return f"folder:{source.location}"
    parts = urllib.parse.urlsplit(source.location if source.kind == "http" else GDRIVE_PROBE_URL)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


def _fetch(source: Source, name: str, partial: Path, progress, cancel, cap: int, connect_timeout: float, say) -> Path:
    if source.kind == "folder":
        path = Path(source.location)
        if not path.is_file():
            raise _NotAtSource(f"{path}: no such file")
        size = path.stat().st_size
        if size > cap:
            raise _too_large(str(path), size, cap)
        say(f"found {name} in the mirror folder: {path}")
        if progress is not None:
            progress(size, size)
        return path
    if source.kind == "gdrive":
        say(f"downloading {name} from the authors' Google Drive folder {source.location}")
        return _fetch_gdrive(source, name, partial, progress, cancel, cap, connect_timeout)
    suffix = ".safetensors" if source.location.lower().endswith(".safetensors") else ".pth"
    key = re.sub(r"[^A-Za-z0-9]+", "-", urllib.parse.urlsplit(source.location).path)[-40:]
    destination = partial / f"{name}.{key}.part{suffix}"
    say(f"downloading {name} from {source.location}")
    fetch_url(
        source.location,
        destination,
        progress=progress,
        cancel=cancel,
        max_bytes=cap,
        connect_timeout=connect_timeout,
        state=destination.with_name(destination.name + ".json"),
    )
    return destination


def _verify_and_install(local: Path, source: Source, name: str, folder: Path, sha256, overwrite, say) -> Path:
    from .registry import install_model

    expected = (sha256 or source.sha256 or "").lower() or None
    digest, original = _digests_of(local)
    found = {digest, original} - {None}
    recorded = recorded_digest(name, cache=folder)
    if expected and expected not in found:
        raise DownloadError(
            f"{source.label}: the file's sha256 is {digest}, expected {expected}; it is not the file expected"
            " and nothing was installed"
        )
    if not expected and recorded and recorded["sha256"].lower() not in found:
        raise DownloadError(
            f"{source.label}: the file's sha256 is {digest}, but the first download of {name!r}"
            f" ({recorded.get('date')}, {recorded.get('source')}) had {recorded['sha256']}; nothing was installed."
            f" If the publisher replaced the file, accept the new one with --sha256 {digest}"
        )
    try:
        installed = install_model(local, name, overwrite=overwrite, cache=folder)
    except FileExistsError:
        raise
    except CheckpointError as exc:
        raise DownloadError(f"{source.label}: the downloaded file is not a usable model: {exc}") from None
    if not expected and not recorded:
        # a converted file from a mirror records the authors' file's digest, which is what later downloads match
        _record_digest(folder, name, original or digest, source.location)
        say(
            f"sha256 {original or digest} (first download: recorded in {_digests_path(folder)}; later downloads"
            " must match it)"
        )
    else:
        say(f"sha256 {digest} (matches {'the expected digest' if expected else 'the first download'})")
    return installed


def _remove_partials(partial: Path, name: str) -> None:
    for leftover in partial.glob(f"{name}.*"):
        if leftover.name == f"{name}.lock":
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def check_download(name: str, *, connect_timeout: float = CONNECT_TIMEOUT_S) -> str:
    """Whether ``name`` can be downloaded now: the first source that is there or answers; downloads nothing.

    Raises :class:`OfflineError` / DownloadError as :func:`download_model` would.
    """
    validate_model_name(name)
    sources = download_sources(name)
    if not sources:
        raise DownloadError(f"there is nowhere to download {name!r} from")
    failures = []
    for source in sources:
        if source.kind == "folder":
            if Path(source.location).is_file():
                return f"{name}: in the mirror folder {source.location}"
            continue
        url = source.location if source.kind == "http" else GDRIVE_PROBE_URL
        try:
            probe(url, connect_timeout=connect_timeout)
        except OfflineError as exc:
            failures.append(exc)
            continue
        if source.kind == "gdrive":
            try:
                _import_gdown()
            except DownloadError as exc:
                return f"{name}: drive.google.com is reachable, but {exc}"
        return f"{name}: {source.label} is reachable"
    reasons = "; ".join(str(f) for f in failures) or "no mirror folder holds it"
    raise OfflineError(f"cannot download {name!r} now: {reasons}.\n{offline_options(name)}")
