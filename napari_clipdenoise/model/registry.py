"""Named models, the local model cache, installation and ``load_model``.

Nothing here touches the network unless :func:`install_model` is given a URL
(downloads are :mod:`napari_clipdenoise.model.download`'s job).
The cache folder is ``platformdirs.user_cache_dir("napari-clipdenoise")/models``
unless the ``CLIPDENOISE_CACHE_DIR`` environment variable names another folder.
Installed models are stored in the project format as ``<name>.safetensors``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, ModelNotInstalledError
from .cache import CACHE_ENV_VAR, cache_dir, installed_models, installed_path
from .catalog import (
    AUTHORS_RELEASE,
    BUNDLED,
    CT_SCALE,
    IDF_CITATION,
    IDF_REPOSITORY,
    NAMED_SCALES,
    PHOTO_SCALE,
    REFERENCE_REPOSITORY,
    REGISTRY,
    BundledModel,
    InputScale,
    RegistryEntry,
    scale_for,
)
from .sources import NAME_RULE, is_valid_name, parse_model_source, validate_model_name

#: Names kept importable from here (they are defined in ``catalog`` and ``cache``).
__all__ = [
    "AUTHORS_RELEASE", "BUNDLED", "CACHE_ENV_VAR", "CT_SCALE", "IDF_CITATION", "IDF_REPOSITORY", "NAMED_SCALES",
    "PHOTO_SCALE", "REFERENCE_REPOSITORY", "REGISTRY", "BundledModel", "DenoisingModel", "InputScale",
    "RegistryEntry", "cache_dir", "install_hint", "install_model", "installed_models", "installed_path",
    "load_model", "remove_model", "scale_for",
]  # fmt: skip


def install_hint(name: str) -> str:
    """What to do when ``name`` cannot be loaded: the install command, the known names, the name rule."""
    entry = REGISTRY.get(name)
    where = cache_dir()
    if entry is None and not is_valid_name(name):
        return f"{name!r} is neither an existing checkpoint file nor a valid model name ({NAME_RULE})"
    if entry is None:
        known = ", ".join(sorted(set(REGISTRY) | set(installed_models())))
        return (
            f"no model named {name!r} is installed in {where} and it is not a file path. "
            f"Known names: {known}. Install a checkpoint with: clipdenoise models import FILE --name {name}"
        )
    if entry.family == "idf":
        return (
            f"model {name!r} is not installed (looked for {installed_path(name)}). Get {entry.release_file}"
            f" ({entry.source}), then run:\n"
            f"    clipdenoise models import PATH/TO/{Path(entry.url).name} --name {name} --sha256 {entry.sha256}\n"
            f"(the bundled IDF model 'idf' needs no download)."
        )
    return (
        f"model {name!r} is not installed (looked for {installed_path(name)}). Download it (online) with:\n"
        f"    clipdenoise models download {name}\n"
        f"or get {entry.release_file} from {entry.source} (linked from {REFERENCE_REPOSITORY}), then run:\n"
        f"    clipdenoise models import PATH/TO/net_g_latest.pth --name {name}\n"
        f"or set {CACHE_ENV_VAR} to a folder that already holds {name}.safetensors."
    )


@dataclass
class DenoisingModel:
    """A loaded denoiser: the torch network plus what is known about it."""

    network: object
    name: str
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def in_channels(self) -> int:
        return self.network.in_channels

    @property
    def family(self) -> str:
        """The network family: ``"clip"`` (CLIPDenoiser) or ``"idf"``."""
        return getattr(self.network, "family", "clip")

    @property
    def out_channels(self) -> int:
        return self.network.out_channels

    @property
    def input_scale(self) -> InputScale | None:
        """The intensity convention the network was trained on (metadata, else registry entry), or None."""
        return scale_for(self.metadata, self.name)

    @property
    def sha256(self) -> str | None:
        return self.metadata.get("weights_sha256") or self.metadata.get("source_sha256")

    @property
    def device(self):
        return next(self.network.parameters()).device

    def to(self, device) -> DenoisingModel:
        self.network.to(device)
        return self

    def provenance(self) -> dict:
        keys = (
            "name", "noise", "recipe", "project_version", "weights_sha256", "source_sha256", "source_file",
            "license", "citation", "adapted_from",
        )  # fmt: skip
        info = {k: self.metadata[k] for k in keys if k in self.metadata}
        info["name"] = self.name
        info["family"] = self.family
        info["in_channels"] = self.in_channels
        scale = self.input_scale
        info["input_scale"] = scale.as_record() if scale is not None else None
        return info


def load_model(source: str | os.PathLike | DenoisingModel, *, device=None) -> DenoisingModel:
    """Load a denoiser by registry/cache name or from a checkpoint path.

    Parameters
    ----------
    source : str or path-like
        A name installed in the cache (``gaussian15``, ``srgb``, ``ldct`` or one
        you imported), or a path to a project ``.safetensors`` or reference ``.pth``.
    device : str or torch.device, optional
        Where to put the network; default: left on the CPU (``denoise`` moves it).

    Raises
    ------
    ModelNotInstalledError
        A known name whose weights are not installed; the message says what to get and how.
    CheckpointError
        The file exists but cannot be read or does not fit the network.
    """
    if isinstance(source, DenoisingModel):
        return source.to(device) if device is not None else source
    parsed = parse_model_source(source)
    if parsed.kind == "url":
        raise CheckpointError(
            f"{parsed.text} is a URL, and nothing is downloaded implicitly. Install it once under a name:"
            f" clipdenoise models import {parsed.text} --name NAME (or install_model(url, name))"
        )
    if parsed.kind == "file":
        if not parsed.exists:
            raise CheckpointError(f"checkpoint file not found: {parsed.path}")
        path, name = parsed.path, parsed.name
    elif parsed.kind in ("installed", "bundled"):
        path, name = parsed.path, parsed.name
    else:
        raise ModelNotInstalledError(install_hint(parsed.text))
    from .loading import load_checkpoint  # imports torch: only once we know there is a file

    loaded = load_checkpoint(path)
    metadata = dict(loaded.metadata)
    if parsed.kind == "bundled":
        entry = REGISTRY[name]
        metadata.update(
            {"name": name, "noise": entry.noise, "description": entry.description, "bundled": True}
            | ({"license": "Apache-2.0", "citation": IDF_CITATION} if entry.family == "idf" else {})
        )
    model = DenoisingModel(loaded.network, metadata.get("name", name), metadata, path)
    if device is not None:
        model.to(device)
    return model


#: Staging folders of installs in progress: ``<cache>/.install-*`` (removed when their owner is gone).
STAGING_PREFIX = ".install-"


class _Staging:
    """A scratch folder in the cache, held by this process through a lock on a file inside it.

    The kernel drops the lock when the process dies (SIGKILL included), so the next
    install finds the folder unlocked and removes it: a killed import leaves nothing
    that lasts.
    """

    def __init__(self, folder: Path):
        self.path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        # The lock file appears under its final name only once it is locked, so a
        # concurrent cleaner never mistakes a starting install for a dead one.
        self._lock = open(self.path / ".lock.new", "wb")  # noqa: SIM115 - held for the folder's lifetime
        _lock_exclusive(self._lock, blocking=True)
        os.replace(self.path / ".lock.new", self.path / ".lock")

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        self._lock.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _lock_exclusive(handle, *, blocking: bool) -> bool | None:
    """Lock an open file: True when locked, False when another process holds it, None without flock."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; stale folders are removed by age instead
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def remove_stale_staging(folder: Path, *, min_age_s: float = 60.0) -> list[Path]:
    """Remove staging folders left by installs that died; returns what was removed."""
    import time

    removed = []
    for candidate in folder.glob(f"{STAGING_PREFIX}*"):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        lock = candidate / ".lock"
        try:
            age = time.time() - candidate.stat().st_mtime
            if lock.is_file():
                with open(lock, "rb") as handle:
                    unlocked = _lock_exclusive(handle, blocking=False)
                stale = age > 86400 if unlocked is None else unlocked
            else:  # killed between creating the folder and locking it
                stale = age > min_age_s
        except OSError:  # another user's folder in a shared cache, or gone meanwhile
            continue
        if stale:
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _publish(staged: Path, target: Path, *, overwrite: bool, name: str) -> None:
    """Move ``staged`` to ``target`` atomically; without ``overwrite``, only if no model is there.

    A hard link creates the name only if it is free (two concurrent imports cannot
    both succeed); file systems without hard links fall back to a checked rename.
    """
    if overwrite:
        os.replace(staged, target)
        return
    try:
        os.link(staged, target)
    except FileExistsError:
        raise FileExistsError(
            f"a model named {name!r} was installed at {target} while this import ran (another process?);"
            " nothing was replaced. Pass overwrite=True (--overwrite) to replace it"
        ) from None
    except OSError:
        if target.exists():
            raise FileExistsError(f"a model named {name!r} is already installed at {target}") from None
        os.replace(staged, target)
    else:
        staged.unlink()


def _network_family(network) -> str:
    from .network import CLIPDenoiser

    return "clip" if isinstance(network, CLIPDenoiser) else getattr(network, "family", type(network).__name__)


def check_against_entry(loaded, name: str, text: str) -> None:
    """CheckpointError when a loaded model cannot be the registry entry ``name`` (family, in/out channels)."""
    entry = REGISTRY.get(name)
    if entry is None:
        return
    family = _network_family(loaded.network)
    if family != entry.family:
        raise CheckpointError(
            f"{text} is a {family!r} network but {name!r} is a {entry.family!r} model; install it under another name"
        )
    given, made = loaded.network.in_channels, loaded.network.out_channels
    if (given, made) != (entry.in_channels, entry.in_channels):
        what = f"a {given}-channel model" if given == made else f"a model with {given} input and {made} output channels"
        raise CheckpointError(
            f"{text} is {what} but {name!r} is a {entry.in_channels}-channel model (in and out);"
            " install it under another name"
        )


def install_model(
    source: str | os.PathLike,
    name: str,
    *,
    sha256: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 60.0,
    input_scale: InputScale | str | None = None,
    cache: str | os.PathLike | None = None,
    max_bytes: int | None = None,
    cancel=None,
) -> Path:
    """Validate a checkpoint (file, BioImage Model Zoo package or http(s) URL) and install it as ``name``.

    The file is loaded strictly (any mismatch is an error), checked against the
    registry entry of the same name (family, input and output channels) and
    against ``sha256`` if given, then written in the project format to
    ``<cache>/<name>.safetensors`` through a staging folder and an atomic link or
    rename, so a failure or a kill never leaves a partial model, and two
    concurrent installs of one name cannot both succeed. ``cache`` installs into
    another folder (``models download --to DIR``); ``max_bytes`` caps a URL download.
    The metadata records the intensity convention the network was trained on:
    ``input_scale`` (an :class:`InputScale` or a name of :data:`NAMED_SCALES`), else
    the checkpoint's own, else the registry entry's.
    """
    if isinstance(input_scale, str):
        if input_scale not in NAMED_SCALES:
            raise ValueError(f"input_scale must be one of {', '.join(NAMED_SCALES)}, got {input_scale!r}")
        input_scale = NAMED_SCALES[input_scale]
    from .checkpoints import file_sha256, save_checkpoint
    from .loading import load_checkpoint

    validate_model_name(name)
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    target = folder / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"a model named {name!r} is already installed at {target}; pass overwrite=True (--overwrite)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the model cache folder {folder}: {exc}; set {CACHE_ENV_VAR} to a writable folder"
        ) from exc
    remove_stale_staging(folder)

    text = os.fspath(source)
    scheme = urllib.parse.urlparse(text).scheme
    with _Staging(folder) as scratch:
        if scheme in ("http", "https"):
            from .fetch import fetch_url

            local = scratch / (Path(urllib.parse.urlparse(text).path).name or "download.pth")
            fetch_url(text, local, progress=progress, cancel=cancel, max_bytes=max_bytes, read_timeout=timeout)
        else:
            local = Path(text).expanduser()
            if not (local.is_file() or local.is_dir()):
                raise CheckpointError(f"checkpoint file not found: {local}")
        digest = file_sha256(local) if local.is_file() else None
        if sha256 and (digest or "").lower() != sha256.lower():
            raise CheckpointError(f"{text}: sha256 is {digest}, expected {sha256}; the file is not the one expected")
        loaded = load_checkpoint(local)
        check_against_entry(loaded, name, text)
        entry = REGISTRY.get(name)
        metadata = {k: v for k, v in loaded.metadata.items() if k not in ("format", "config")}
        metadata.update({"name": name, "installed_from": text})
        metadata["source_sha256"] = metadata.get("source_sha256", digest)
        if entry:
            metadata.setdefault("noise", entry.noise)
            metadata.setdefault("description", entry.description)
        scale = input_scale or scale_for(metadata, name)
        if scale is not None:
            metadata["input_scale"] = scale.as_record()
        staged = scratch / "model.safetensors"
        save_checkpoint(loaded.network, staged, metadata)
        _publish(staged, target, overwrite=overwrite, name=name)
    return target


def remove_model(name: str) -> None:
    """Delete the installed model ``name`` (ValueError for a name that is not a model name, e.g. a path)."""
    path = installed_path(name)
    if not path.is_file():
        raise ModelNotInstalledError(f"no model named {name!r} is installed in {cache_dir()}")
    path.unlink()
