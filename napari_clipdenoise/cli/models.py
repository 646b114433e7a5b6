"""``clipdenoise models``: list, inspect, import, download, export, locate and remove models."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import EXIT_FAILED, EXIT_OK, CommandError

EXPORT_FORMATS = ("bioimageio", "onnx", "torchscript")


def _model_name(name: str, action: str) -> str:
    """``name`` if it is a model name; a usage error for a path or anything else that could leave the cache."""
    from ..model.sources import validate_model_name

    try:
        return validate_model_name(name)
    except ValueError as exc:
        raise CommandError(
            f"models {action} takes the name of an installed model, not a path: {exc}."
            " See the names with: clipdenoise models list"
        ) from None


def _byte_progress(desc: str):
    """A tqdm bar on stderr fed by ``progress(done, total)``; returns ``(callback, close)``."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=desc, file=sys.stderr)
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close() -> None:
        if bar is not None:
            bar.close()

    return progress, close


def add_parser(commands) -> None:
    models = commands.add_parser("models", help="list, inspect, import, download, export models; the cache folder")
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
    imp.add_argument(
        "--input-scale",
        choices=("8-bit", "HU"),
        help="the intensities the network was trained on: 8-bit photographs (0..255) or CT in HU (-1024..3072)"
        " (default: the checkpoint's own record, else the registry entry of --name)",
    )
    imp.set_defaults(handler=command_models_import)
    download = sub.add_parser(
        "download",
        help="download a model (gaussian15, srgb, ldct or all) from a configured mirror or the authors' release",
        description="Download, validate and install models exactly like 'models import'. Sources: mirrors"
        " (CLIPDENOISE_MODEL_MIRROR or the models config file), then the authors' Google Drive folder (needs the"
        " 'download' extra). Resumable, size-capped; nothing is installed unless the whole file checks out.",
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="model names, or 'all'")
    download.add_argument("--to", metavar="DIR", help="install into DIR instead of the cache (to copy it elsewhere)")
    download.add_argument("--sha256", help="the digest the downloaded file must have (one NAME only)")
    download.add_argument("--overwrite", action="store_true", help="download again and replace an installed model")
    download.add_argument("--max-size", type=float, metavar="MB", help="size cap (default 1024 MB)")
    download.add_argument("--check", action="store_true", help="only check that a source can be reached now")
    download.set_defaults(handler=command_models_download)
    export = sub.add_parser(
        "export",
        help="export a model as a BioImage Model Zoo package, ONNX or TorchScript",
        description="Export a model for other tools (Fiji/deepImageJ, ilastik, QuPath, onnxruntime). Needs the"
        " 'export' extra for bioimageio and onnx.",
    )
    export.add_argument("name", metavar="NAME", help="an installed or bundled model name, or a checkpoint file")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("-o", "--output", required=True, metavar="PATH", help="the file to write (.zip, .onnx, .pt)")
    export.add_argument("--overwrite", action="store_true", help="replace PATH if it exists (never an input)")
    export.add_argument("--test", action="store_true", help="bioimageio: run bioimageio.core's model test on it")
    export.add_argument(
        "--halo",
        type=int,
        metavar="PX",
        help="bioimageio: the halo tiled runs crop (default 128, the seam bound; smaller packages accept smaller"
        " inputs and show seams)",
    )
    export.add_argument("--license", metavar="SPDX", help="bioimageio: the weights' licence, if you know it")
    export.set_defaults(handler=command_models_export)
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
        print("  (online: clipdenoise models download gaussian15)")
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

    from ..model.registry import REGISTRY, install_hint, scale_for
    from ..model.sources import parse_model_source

    parsed = parse_model_source(args.name)
    if parsed.kind == "file" and not parsed.exists:
        raise CommandError(f"{args.name} is neither a model name nor an existing checkpoint file")
    if parsed.kind != "file":
        _model_name(args.name, "info")
    entry = REGISTRY.get(args.name)
    path = parsed.path
    given_file = parsed.kind == "file"
    if given_file and entry is None:
        print(f"{path}: a checkpoint file")
    if entry is not None:
        print(
            f"{entry.name}: {entry.description}\n  noise: {entry.noise}\n  channels: {entry.in_channels}"
            f"\n  source: {entry.source}\n  file: {entry.release_file}"
        )
        if path is None or not path.is_file():
            print(f"  input scale: {entry.input_scale.describe()}")
    if path is not None and path.is_file():
        from ..errors import CheckpointError
        from ..model.checkpoints import file_sha256, read_project_metadata

        where = "checkpoint file (not installed)" if given_file else "installed at"
        print(f"  {where}: {path}\n  file sha256: {file_sha256(path)}")
        try:
            metadata = read_project_metadata(path)
        except CheckpointError as exc:
            print(f"  (no project metadata: {exc})")
        else:
            scale = scale_for(metadata, metadata.get("name") or args.name)
            print(f"  input scale: {scale.describe() if scale is not None else 'unknown (not recorded)'}")
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

    _model_name(args.name, "import --name")
    progress, close = _byte_progress("download")
    try:
        target = install_model(
            args.source,
            args.name,
            sha256=args.sha256,
            overwrite=args.overwrite,
            progress=progress,
            input_scale=args.input_scale,
        )
    except (CheckpointError, FileExistsError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        close()
    print(f"installed {args.name!r} at {target}")
    return EXIT_OK


def command_models_download(args) -> int:
    from ..errors import CheckpointError
    from ..model import download

    names = list(args.names)
    if "all" in names:
        if len(names) > 1:
            raise CommandError("models download: give 'all' alone, or names")
        names = download.downloadable_models()
    for name in names:
        _model_name(name, "download")
    if args.sha256 and len(names) > 1:
        raise CommandError("models download: --sha256 is the digest of one file; give one NAME with it")
    if args.max_size is not None and args.max_size <= 0:
        raise CommandError(f"--max-size must be > 0 MB, got {args.max_size:g}")
    max_bytes = int(args.max_size * 2**20) if args.max_size else None
    failed = 0
    for name in names:
        if args.check:
            try:
                print(download.check_download(name))
            except CheckpointError as exc:
                print(f"clipdenoise: {exc}", file=sys.stderr)
                failed += 1
            continue
        progress, close = _byte_progress(name)
        try:
            target = download.download_model(
                name,
                progress=progress,
                sha256=args.sha256,
                to=args.to,
                overwrite=args.overwrite,
                max_bytes=max_bytes,
                report=lambda line: print(line, file=sys.stderr),
            )
        except (CheckpointError, OSError) as exc:
            close()
            print(f"clipdenoise: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        close()
        print(f"installed {name!r} at {target}")
    if args.to and not failed and not args.check:
        print(
            f"to use these models on another machine, copy {args.to} there and set CLIPDENOISE_CACHE_DIR to it"
            " (or CLIPDENOISE_MODEL_MIRROR, then run: clipdenoise models download NAME)"
        )
    return EXIT_FAILED if failed else EXIT_OK


def command_models_export(args) -> int:
    from ..errors import CheckpointError, ModelNotInstalledError
    from ..model.export import ExportError, export_model

    try:
        written = export_model(
            args.name,
            args.format,
            args.output,
            overwrite=args.overwrite,
            test=args.test,
            license=args.license,
            halo=args.halo,
        )
    except (ExportError, CheckpointError, ModelNotInstalledError, FileExistsError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    for line in written.notes:
        print(line, file=sys.stderr)
    print(f"exported {args.name!r} as {args.format} to {written.path}")
    return EXIT_OK


def command_models_path(args) -> int:
    from ..model.registry import cache_dir, install_hint, installed_path

    if args.name is None:
        print(cache_dir())
        return EXIT_OK
    name = _model_name(args.name, "path")
    if not installed_path(name).is_file():
        raise CommandError(install_hint(name))
    print(installed_path(name))
    return EXIT_OK


def command_models_remove(args) -> int:
    from ..errors import ModelNotInstalledError
    from ..model.registry import remove_model

    name = _model_name(args.name, "remove")
    try:
        remove_model(name)
    except ModelNotInstalledError as exc:
        raise CommandError(str(exc)) from exc
    print(f"removed {name!r}")
    return EXIT_OK
