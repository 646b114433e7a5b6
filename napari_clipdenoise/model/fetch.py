"""Fetching one URL to a file: resumable (HTTP ``Range``), size-capped, cancellable, fast to fail offline.

The transport under ``models import URL`` and ``models download``; it knows
nothing of models (the registry installs what it fetched).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from ..errors import CheckpointError, DenoiseCancelled

MAX_SIZE_ENV_VAR = "CLIPDENOISE_MAX_DOWNLOAD_MB"
#: Seconds to reach a server (DNS, TCP and TLS); an offline machine is told so within about this long.
CONNECT_TIMEOUT_S = 1.5
#: Seconds without a byte before a transfer counts as cut (then it resumes).
READ_TIMEOUT_S = 30.0
#: Immediate resumptions of a cut transfer before giving up (the next run resumes again).
RESUMES = 3
#: Default cap on one download: the network's checkpoints are about 150 MB.
DEFAULT_MAX_BYTES = 1 << 30
_CHUNK = 1 << 18
_USER_AGENT = "napari-clipdenoise"


class DownloadError(CheckpointError):
    """A model could not be downloaded; the message says why and what to do. Nothing was installed."""


class OfflineError(DownloadError):
    """No source could be reached: the machine is offline or the network is blocked."""


class _NotAtSource(DownloadError):
    """The source does not have the file (HTTP 404, no such file in a folder): try the next one."""


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


# ----------------------------------------------------------------------------- HTTP
def _describe_network_error(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def _connection(url: str, connect_timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """An unconnected connection for ``url`` (through the environment's proxy if any) and the request target."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"{url} is not an http(s) URL")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        headers = {}
        if proxied.username:
            import base64

            token = base64.b64encode(f"{proxied.username}:{proxied.password or ''}".encode()).decode()
            headers["Proxy-Authorization"] = f"Basic {token}"
        if https:
            conn = http.client.HTTPSConnection(
                proxied.hostname, proxied.port or 8080, timeout=connect_timeout, context=ssl.create_default_context()
            )
            conn.set_tunnel(parts.hostname, port, headers=headers)
            return conn, target
        conn = http.client.HTTPConnection(proxied.hostname, proxied.port or 8080, timeout=connect_timeout)
        return conn, url
    if https:
        return http.client.HTTPSConnection(
            parts.hostname, port, timeout=connect_timeout, context=ssl.create_default_context()
        ), target
    return http.client.HTTPConnection(parts.hostname, port, timeout=connect_timeout), target


def _connect(conn: http.client.HTTPConnection, url: str, connect_timeout: float) -> None:
    """Connect within ``connect_timeout`` (name resolution included, which has no timeout of its own)."""
    failure: list[BaseException] = []

    def run():
        try:
            conn.connect()
        except BaseException as exc:  # reported to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="clipdenoise-connect", daemon=True)
    worker.start()
    worker.join(connect_timeout + 0.2)
    host = urllib.parse.urlsplit(url).hostname
    if worker.is_alive():
        raise OfflineError(f"cannot reach {host}: no answer within {connect_timeout:g} s")
    if failure:
        exc = failure[0]
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            raise DownloadError(f"TLS with {host} failed: {exc}") from None
        if isinstance(exc, OSError | http.client.HTTPException):
            raise OfflineError(f"cannot reach {host}: {_describe_network_error(exc)}") from None
        raise exc


def _open(url: str, headers: dict, connect_timeout: float, read_timeout: float, redirects: int = 5):
    """GET ``url`` following redirects; returns ``(connection, response)``."""
    for _ in range(redirects + 1):
        conn, target = _connection(url, connect_timeout)
        _connect(conn, url, connect_timeout)
        conn.sock.settimeout(read_timeout)
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Cut(f"{_describe_network_error(exc)}") from None
        location = response.getheader("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            conn.close()
            url = urllib.parse.urljoin(url, location)
            continue
        return conn, response
    raise DownloadError(f"too many redirects from {url}")


class _Cut(DownloadError):
    """The connection broke after it was made (resumable)."""


def probe(url: str, *, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`OfflineError` unless ``url``'s server accepts a connection within ``connect_timeout``."""
    conn, _ = _connection(url, connect_timeout)
    try:
        _connect(conn, url, connect_timeout)
    finally:
        conn.close()


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    found = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not found:
        return None
    return int(found.group(1)), None if found.group(3) == "*" else int(found.group(3))


class _TooLarge(DownloadError):
    """The file is larger than the cap (its partial file is removed)."""


def _too_large(url: str, size: int, cap: int) -> DownloadError:
    return _TooLarge(
        f"{url} is {size / 2**20:.1f} MiB, more than the download cap of {cap / 2**20:.1f} MiB (a checkpoint of this"
        f" network is about 150 MB); nothing was installed. If the file is right, raise the cap with --max-size MB"
        f" or {MAX_SIZE_ENV_VAR}"
    )


def fetch_url(
    url: str,
    destination: str | os.PathLike,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    max_bytes: int | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    resumes: int = RESUMES,
    state: str | os.PathLike | None = None,
) -> int:
    """Download ``url`` into ``destination``, resuming (HTTP Range) after a cut connection; returns its size.

    ``destination`` may hold the start of the same file from an earlier attempt;
    ``state`` (a small JSON file) remembers the URL and the server's validators so
    that a later call resumes only the same file. The size is capped at
    ``max_bytes`` (default :func:`max_download_bytes`); ``cancel`` (an Event or a
    callable) stops it with :class:`DenoiseCancelled`. Errors are DownloadError
    (:class:`OfflineError` when the server cannot be reached).
    """
    destination = Path(destination)
    cap = max_bytes or max_download_bytes()
    state_path = Path(state) if state is not None else None
    known = _read_state(state_path, url)
    if destination.exists() and state_path is not None and not known:
        destination.unlink()  # a partial file of another URL
    cuts = 0
    while True:
        if _cancelled(cancel):
            raise DenoiseCancelled(f"download of {url} cancelled")
        have = destination.stat().st_size if destination.exists() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if known.get("etag") or known.get("last_modified"):
                headers["If-Range"] = known.get("etag") or known.get("last_modified")
        try:
            conn, response = _open(url, headers, connect_timeout, read_timeout)
        except (_Cut, OfflineError) as exc:
            if isinstance(exc, OfflineError) and cuts == 0:
                raise  # unreachable from the start: say so at once, no retry loop
            cuts += 1
            if cuts > resumes:
                raise _gave_up(url, destination, cuts, exc) from None
            time.sleep(min(0.2 * cuts, 1.0))
            continue
        try:
            total, mode = _plan_body(url, response, have, known, destination)
            if total is None and mode is None:  # 416 on a complete file
                return have
            if total is not None and total > cap:
                destination.unlink(missing_ok=True)
                raise _too_large(url, total, cap)
            if state_path is not None:
                known = {
                    "url": url,
                    "etag": response.getheader("ETag"),
                    "last_modified": response.getheader("Last-Modified"),
                    "total": total,
                }
                _write_state(state_path, known)
            done = 0 if mode == "wb" else have
            with open(destination, mode) as out:
                while True:
                    if _cancelled(cancel):
                        raise DenoiseCancelled(f"download of {url} cancelled")
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Cut(_describe_network_error(exc)) from None
                    if not chunk:
                        break
                    done += len(chunk)
                    if done > cap:
                        out.close()
                        destination.unlink(missing_ok=True)
                        raise _too_large(url, done, cap)
                    out.write(chunk)
                    if progress is not None:
                        progress(done, total or 0)
            if total is not None and done < total:
                raise _Cut(f"the server closed the connection after {done} of {total} bytes")
            return done
        except _Cut as exc:
            cuts += 1
            if cuts > resumes:
                raise _gave_up(url, destination, cuts, exc) from None
        finally:
            conn.close()


def _gave_up(url: str, destination: Path, cuts: int, error: BaseException) -> DownloadError:
    size = destination.stat().st_size if destination.exists() else 0
    return DownloadError(
        f"the download of {url} was cut {cuts} times ({error}); the {size} bytes received are kept in"
        f" {destination.parent}, and running the same command again resumes from there"
    )


def _plan_body(url, response, have: int, known: dict, destination: Path) -> tuple[int | None, str | None]:
    """``(total size, file mode)`` for a response, or raise for statuses that end this source."""
    status = response.status
    if status == 200:
        length = response.getheader("Content-Length")
        return (int(length) if length and length.isdigit() else None), "wb"
    if status == 206:
        extent = _content_range(response.getheader("Content-Range"))
        if extent is None or extent[0] != have:
            raise _Cut(f"the server resumed at the wrong place ({response.getheader('Content-Range')})")
        return extent[1], "ab"
    if status == 416 and have and known.get("total") == have:
        return None, None
    if status == 416:
        destination.unlink(missing_ok=True)
        raise _Cut("the server refused to resume; starting again")
    if status in (404, 410):
        raise _NotAtSource(f"{url}: not found (HTTP {status})")
    if status in (401, 403):
        raise DownloadError(f"{url}: access denied (HTTP {status} {response.reason})")
    raise DownloadError(f"{url}: the server answered HTTP {status} {response.reason}")


def _read_state(path: Path | None, url: str) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("url") == url else {}


def _write_state(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- Google Drive (gdown)


def max_download_bytes() -> int:
    """The size cap: ``CLIPDENOISE_MAX_DOWNLOAD_MB`` or :data:`DEFAULT_MAX_BYTES`."""
    text = os.environ.get(MAX_SIZE_ENV_VAR)
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = float(text)
    except ValueError:
        raise DownloadError(f"{MAX_SIZE_ENV_VAR} must be a number of megabytes, got {text!r}") from None
    if value <= 0:
        raise DownloadError(f"{MAX_SIZE_ENV_VAR} must be > 0, got {text!r}")
    return int(value * 2**20)


# ----------------------------------------------------------------------------- messages
