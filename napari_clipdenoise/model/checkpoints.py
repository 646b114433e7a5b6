"""Reading and writing weights: reference checkpoints, the project format, CLIP files.

Formats
-------
reference
    The authors' BasicSR ``net_g_*.pth``: a torch pickle ``{'params': state_dict}``
    with ``encoder.*`` (incl. layer4, unused), ``up_path.*``, ``last.weight`` and,
    for the 1-channel CT model, ``first.weight``. Read with ``weights_only=True``.
project
    A ``.safetensors`` file whose header metadata holds a JSON document (network
    config, what it was trained on, recipe, project version and the sha256 of the
    weights). This is what training writes and what the plugin and CLI load.
clip
    CLIP RN50 weights for training: OpenAI's TorchScript ``RN50.pt`` (only when
    the caller says it trusts the file), or open_clip ``.bin``/``.safetensors``
    files with ``visual.*`` keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..errors import CheckpointError
from .network import CLIPDenoiser, NetworkConfig

PROJECT_FORMAT = "napari-clipdenoise"
PROJECT_FORMAT_VERSION = "1"
_IGNORED_REFERENCE_PREFIXES = ("encoder.layer4.",)


@dataclass
class LoadedCheckpoint:
    """A network built from a file, with what the file says about itself."""

    network: torch.nn.Module  # a CLIPDenoiser, or an IDFDenoiser for the IDF family
    format: str  # "reference", "project", "idf-weights" or "idf-lightning"
    metadata: dict = field(default_factory=dict)
    ignored_keys: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- utils
def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes, independent of file layout."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def sniff_format(path: str | os.PathLike) -> str:
    """Return 'safetensors', 'torchscript', 'torch-zip', 'torch-pickle' or raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes): {path}; download it again")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise CheckpointError(
                f"{path} looks like a torch zip archive but is corrupt ({exc}); download it again"
            ) from exc
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len < min(size, 100_000_000) and head[8:9] == b"{":
            return "safetensors"
    raise CheckpointError(
        f"{path} is not a checkpoint this project can read (expected a .safetensors file or a torch .pth/.pt/.bin file)"
    )


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated archives, unsafe globals
        raise CheckpointError(
            f"could not read {path} as a torch checkpoint: {exc}. Only plain tensor checkpoints are read"
            " (weights_only=True); download the file again if it may be truncated"
        ) from exc


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as exc:
        raise CheckpointError(f"could not read {path} as safetensors: {exc}; the file may be truncated") from exc
    return tensors, header


def describe_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], limit: int = 12) -> str:
    """Human-readable list of missing, unexpected and mis-shaped keys ('' when they fit)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k}: file {tuple(given[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if tuple(expected[k].shape) != tuple(given[k].shape)
    )
    parts = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
            parts.append(f"{len(items)} {title} key(s): {shown}")
    return "; ".join(parts)


def load_state_dict_strict(network: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    expected = network.state_dict()
    problem = describe_mismatch(expected, state_dict)
    if problem:
        raise CheckpointError(f"{source} does not fit the CLIPDenoiser network: {problem}")
    converted = {k: v.to(expected[k].dtype) for k, v in state_dict.items()}
    network.load_state_dict(converted, strict=True)


# ---------------------------------------------------------------- reference format
def _reference_params(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "params" in obj and isinstance(obj["params"], dict):
        params = obj["params"]
    elif isinstance(obj, dict) and "params_ema" in obj and isinstance(obj["params_ema"], dict):
        params = obj["params_ema"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        params = obj
    else:
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} holds no state dict (expected a dict with key 'params'; found {keys})")
    return {k.removeprefix("module."): v for k, v in params.items()}


def config_from_state_dict(params: dict[str, torch.Tensor], source: str) -> NetworkConfig:
    """Infer in/out channels and bias from the tensor shapes of a CLIPDenoiser state dict."""
    if "last.weight" not in params:
        raise CheckpointError(f"{source} has no 'last.weight': it is not a CLIPDenoiser checkpoint")
    in_channels = 1 if "first.weight" in params else 3
    out_channels = int(params["last.weight"].shape[0])
    bias = any(k.endswith(".bias") and not k.startswith("encoder.") for k in params)
    return NetworkConfig(in_channels=in_channels, out_channels=out_channels, bias=bias)


def load_reference_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Load an authors' BasicSR checkpoint strictly (layer4 keys are read and dropped)."""
    path = Path(path)
    kind = sniff_format(path)
    if kind not in ("torch-zip", "torch-pickle"):
        raise CheckpointError(f"{path} is a {kind} file, not a reference .pth checkpoint")
    params = _reference_params(_torch_load(path), path)
    ignored = sorted(k for k in params if k.startswith(_IGNORED_REFERENCE_PREFIXES))
    used = {k: v for k, v in params.items() if not k.startswith(_IGNORED_REFERENCE_PREFIXES)}
    network = CLIPDenoiser(config_from_state_dict(used, str(path)))
    load_state_dict_strict(network, used, str(path))
    metadata = {
        "format": "reference",
        "source_file": path.name,
        "source_sha256": file_sha256(path),
        "config": network.config.to_dict(),
        "in_channels": network.in_channels,
        "out_channels": network.out_channels,
    }
    return LoadedCheckpoint(network.eval(), "reference", metadata, ignored)


# ------------------------------------------------------------------ project format
def save_checkpoint(network: CLIPDenoiser, path: str | os.PathLike, metadata: dict | None = None) -> dict:
    """Write ``network`` in the project format (atomically) and return the metadata written.

    ``metadata`` may carry ``name``, ``description``, ``noise`` (what it was trained
    on), ``recipe`` (training settings) and anything else JSON-serialisable.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    meta = dict(metadata or {})
    meta.update(
        {
            "format": PROJECT_FORMAT,
            "format_version": PROJECT_FORMAT_VERSION,
            "family": getattr(network, "family", "clip"),
            "config": _network_config(network),
            "in_channels": network.in_channels,
            "out_channels": network.out_channels,
            "project_version": __version__,
            "weights_sha256": state_dict_sha256(state),
        }
    )
    header = {"format": PROJECT_FORMAT, "metadata": json.dumps(meta, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=header)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


def _network_config(network) -> dict:
    if getattr(network, "family", "clip") == "idf":
        return {"family": "idf", "iterations": int(network.iterations)}
    return network.config.to_dict()


def read_project_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a project-format file, without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if sniff_format(path) != "safetensors":
        raise CheckpointError(f"{path} is not a project-format .safetensors checkpoint")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"could not read {path} as safetensors: {exc}") from exc
    if header.get("format") != PROJECT_FORMAT or "metadata" not in header:
        raise CheckpointError(
            f"{path} is a safetensors file but not a napari-clipdenoise checkpoint (no '{PROJECT_FORMAT}' metadata);"
            " CLIP encoder weights are used by training, not for denoising"
        )
    return json.loads(header["metadata"])


def load_project_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> LoadedCheckpoint:
    path = Path(path)
    metadata = read_project_metadata(path)
    state, _ = _read_safetensors(path)
    if verify and metadata.get("weights_sha256") and state_dict_sha256(state) != metadata["weights_sha256"]:
        raise CheckpointError(f"{path}: the weights do not match the sha256 recorded in the file; it is corrupt")
    if metadata.get("family", "clip") == "idf":
        from .idf import network_from_state

        return LoadedCheckpoint(network_from_state(state, str(path)), "project", metadata)
    network = CLIPDenoiser(NetworkConfig.from_dict({**metadata.get("config", {}), "feature_aug_level": 0.0}))
    load_state_dict_strict(network, state, str(path))
    return LoadedCheckpoint(network.eval(), "project", metadata)


def _idf_weights_file(path: Path) -> LoadedCheckpoint | None:
    """A plain safetensors file of exactly IDF's six block tensors (as the bundled one), else None."""
    from safetensors import safe_open

    from .idf import STATE_SHAPES, load_idf_weights

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            keys, header = set(handle.keys()), handle.metadata() or {}
    except Exception:  # noqa: BLE001 - not readable as safetensors: the caller reports it
        return None
    if keys != set(STATE_SHAPES) or header.get("format") == PROJECT_FORMAT:
        return None
    metadata = {
        "format": "idf-weights",
        "family": "idf",
        "source_file": header.get("source_file", path.name),
        "source_sha256": header.get("source_sha256") or file_sha256(path),
        "in_channels": 3,
        "out_channels": 3,
    }
    return LoadedCheckpoint(load_idf_weights(path), "idf-weights", metadata)


def _idf_lightning_file(path: Path) -> LoadedCheckpoint | None:
    """The authors' IDF Lightning ``.ckpt`` (recognised by its pickle naming IDF's block tensors), else None.

    It is read by a restricted unpickler that runs no code from the file
    (:func:`~napari_clipdenoise.model.idf.read_idf_lightning_checkpoint`).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles or archive.getinfo(pickles[0]).file_size > 64 << 20:
                return None
            text = archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    if b"model.block.feature_extractor" not in text:
        return None
    from .idf import network_from_state, read_idf_lightning_checkpoint

    state = read_idf_lightning_checkpoint(path)
    metadata = {
        "format": "idf-lightning",
        "family": "idf",
        "source_file": path.name,
        "source_sha256": file_sha256(path),
        "in_channels": 3,
        "out_channels": 3,
    }
    return LoadedCheckpoint(network_from_state(state, str(path)), "idf-lightning", metadata)


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Load a project-format ``.safetensors``, a reference ``.pth``, or IDF weights (bundled or the authors' ``.ckpt``)."""
    path = Path(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        return _idf_weights_file(path) or load_project_checkpoint(path)
    if kind == "torch-zip":
        found = _idf_lightning_file(path)
        if found is not None:
            return found
    if kind == "torchscript":
        raise CheckpointError(
            f"{path} is a TorchScript archive (like OpenAI's RN50.pt): that holds CLIP encoder weights for"
            " training, not a denoiser. Use it with the training command's --clip-weights option"
        )
    return load_reference_checkpoint(path)


# --------------------------------------------------------------- CLIP RN50 weights
def _clip_visual_to_encoder(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    prefix = "visual."
    visual = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not visual:
        # some exports hold the visual tower alone
        visual = dict(state)
    keep = {
        k: v.float()
        for k, v in visual.items()
        if not k.startswith(("layer4.", "attnpool."))
        and k.split(".")[0] in {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "layer1", "layer2", "layer3"}
    }
    expected = CLIPDenoiser().encoder.state_dict()
    problem = describe_mismatch(expected, keep)
    if problem:
        raise CheckpointError(f"{source} does not hold CLIP RN50 visual weights: {problem}")
    return keep


def load_clip_encoder_weights(path: str | os.PathLike, *, trust_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Read CLIP RN50 weights and return the encoder (stem..layer3) state dict in float32.

    Accepts open_clip ``.safetensors`` / ``.bin`` files with ``visual.*`` keys and,
    when ``trust_torchscript`` is True, OpenAI's TorchScript ``RN50.pt`` (loading a
    TorchScript archive runs code from the file, so it is never done implicitly).
    """
    path = Path(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        state, _ = _read_safetensors(path)
    elif kind == "torchscript":
        if not trust_torchscript:
            raise CheckpointError(
                f"{path} is a TorchScript archive; loading one can run code from the file. Pass it explicitly"
                " (trust_torchscript=True / --clip-weights) if it is OpenAI's RN50.pt from a source you trust"
            )
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise CheckpointError(f"could not load TorchScript archive {path}: {exc}") from exc
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
        state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return _clip_visual_to_encoder(state, str(path))


def fetch_clip_encoder_weights_open_clip() -> dict[str, torch.Tensor]:  # pragma: no cover - needs internet
    """Download CLIP RN50 through open_clip ('RN50-quickgelu', 'openai'); optional extra, online only."""
    try:
        import open_clip
    except ImportError as exc:
        raise CheckpointError(
            "open_clip is not installed: pip install 'napari-clipdenoise[clip]' or pass a CLIP weights file"
        ) from exc
    model = open_clip.create_model("RN50-quickgelu", pretrained="openai")
    return _clip_visual_to_encoder({f"visual.{k}": v for k, v in model.visual.state_dict().items()}, "open_clip RN50")
