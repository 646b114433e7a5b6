"""``clipdenoise models``: list, inspect, import, locate and remove installed models."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import EXIT_OK, CommandError


def add_parser(commands) -> None:
    models = commands.add_parser("models", help="list, inspect, import models; show the cache folder")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="models in the registry and in the cache").set_defaults(handler=command_models_list)
    info = sub.add_parser("info", help="details of one model (registry name, installed name or file)")
    info.add_argument("name")
    info.set_defaults(handler=command_models_info)
    imp = sub.add_parser("import", help="validate a checkpoint (file or http(s) URL) and install it under a name")
    imp.add_argument("source", metavar="FILE_OR_URL")
    imp.add_argument("--name", required=True, help="name to install it as, e.g. gaussian15")
    imp.add_argument("--sha256", help="expected sha256 of the file")
    imp.add_argument("--overwrite", action="store_true", help="replace an installed model of that name")
    imp.set_defaults(handler=command_models_import)
    path = sub.add_parser("path", help="the cache folder (or an installed model's file)")
    path.add_argument("name", nargs="?")
    path.set_defaults(handler=command_models_path)
    remove = sub.add_parser("remove", help="delete an installed model from the cache")
    remove.add_argument("name")
    remove.set_defaults(handler=command_models_remove)


def command_models_list(args) -> int:
    from ..model.registry import REGISTRY, cache_dir, installed_models, installed_path

    installed = set(installed_models())
    print(f"model cache: {cache_dir()}")
    for name, entry in REGISTRY.items():
        state = f"installed ({installed_path(name)})" if name in installed else "not installed"
        print(f"  {name:<12} {entry.in_channels}-ch  {state}\n      {entry.description}\n      source: {entry.source}")
    for name in sorted(installed - set(REGISTRY)):
        print(f"  {name:<12} {_channels(installed_path(name))}  installed ({installed_path(name)})")
    if not installed:
        print("no model installed yet: clipdenoise models import PATH/TO/net_g_latest.pth --name gaussian15")
    return EXIT_OK


def _channels(path: Path) -> str:
    """``N-ch`` from an installed file's project metadata, ``?-ch`` when it cannot be read."""
    from ..errors import CheckpointError
    from ..model.checkpoints import read_project_metadata

    try:
        metadata = read_project_metadata(path)
    except (CheckpointError, OSError, ValueError):
        return "?-ch"
    channels = metadata.get("in_channels") or (metadata.get("config") or {}).get("in_channels")
    return f"{channels}-ch" if isinstance(channels, int) else "?-ch"


def command_models_info(args) -> int:
    import json

    from ..model.registry import REGISTRY, install_hint, installed_path

    entry = REGISTRY.get(args.name)
    path = Path(args.name).expanduser()
    given_file = path.is_file()
    if not given_file:
        path = installed_path(args.name)
    elif entry is None:
        print(f"{path}: a checkpoint file")
    if entry is not None:
        print(
            f"{entry.name}: {entry.description}\n  noise: {entry.noise}\n  channels: {entry.in_channels}"
            f"\n  source: {entry.source}\n  file: {entry.release_file}"
        )
    if path.is_file():
        from ..errors import CheckpointError
        from ..model.checkpoints import file_sha256, read_project_metadata

        where = "checkpoint file (not installed)" if given_file else "installed at"
        print(f"  {where}: {path}\n  file sha256: {file_sha256(path)}")
        try:
            metadata = read_project_metadata(path)
        except CheckpointError as exc:
            print(f"  (no project metadata: {exc})")
        else:
            shown = {k: v for k, v in metadata.items() if k != "config"}
            print("  metadata: " + json.dumps(shown, indent=4, sort_keys=True, default=str).replace("\n", "\n  "))
        return EXIT_OK
    if entry is None:
        raise CommandError(install_hint(args.name))
    print("  not installed. " + install_hint(args.name))
    return EXIT_OK


def command_models_import(args) -> int:
    from ..errors import CheckpointError
    from ..model.registry import install_model

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total or None, unit="B", unit_scale=True, desc="download", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        target = install_model(args.source, args.name, sha256=args.sha256, overwrite=args.overwrite, progress=progress)
    except (CheckpointError, FileExistsError, ValueError, OSError) as exc:
        raise CommandError(download_problem(exc, args.source) or str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    print(f"installed {args.name!r} at {target}")
    return EXIT_OK


def download_problem(exc: BaseException, source: str) -> str | None:
    """A failed download of ``source`` in words (not a bare ``<urlopen error ...>``), or None if it was no download."""
    import socket
    import ssl
    import urllib.error
    import urllib.parse

    if urllib.parse.urlparse(str(source)).scheme.lower() not in ("http", "https"):
        return None
    seen, reason = set(), exc
    while reason is not None and id(reason) not in seen:  # the urllib error may be wrapped by the installer
        seen.add(id(reason))
        if isinstance(reason, (urllib.error.URLError, OSError)):
            break
        reason = reason.__cause__ or reason.__context__
    if reason is None:
        return None
    if isinstance(reason, urllib.error.HTTPError):
        what = f"the server answered HTTP {reason.code} ({reason.reason})"
        if reason.code == 404:
            what += "; check the address"
    else:
        cause = reason.reason if isinstance(reason, urllib.error.URLError) else reason
        host = urllib.parse.urlsplit(str(source)).netloc
        if isinstance(cause, ConnectionRefusedError):
            what = f"the connection to {host} was refused (no server answers there)"
        elif isinstance(cause, socket.gaierror):
            what = f"the host name in {host} could not be resolved (no network, or a typo in the address)"
        elif isinstance(cause, (TimeoutError, socket.timeout)):
            what = f"the connection to {host} timed out"
        elif isinstance(cause, ssl.SSLError):
            what = f"the secure connection to {host} failed ({getattr(cause, 'reason', None) or cause})"
        elif isinstance(cause, OSError) and cause.strerror:
            what = f"{cause.strerror.lower()} while talking to {host}"
        else:
            return None
    return f"could not download {source}: {what}; nothing was installed"


def command_models_path(args) -> int:
    from ..model.registry import cache_dir, install_hint, installed_path

    if args.name is None:
        print(cache_dir())
        return EXIT_OK
    if not installed_path(args.name).is_file():
        raise CommandError(install_hint(args.name))
    print(installed_path(args.name))
    return EXIT_OK


def command_models_remove(args) -> int:
    from ..errors import ModelNotInstalledError
    from ..model.registry import remove_model

    try:
        remove_model(args.name)
    except ModelNotInstalledError as exc:
        raise CommandError(str(exc)) from exc
    print(f"removed {args.name!r}")
    return EXIT_OK
