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

Every file is parsed by its structure, defensively: the format is decided by
:func:`sniff_format` from the layout (never a first byte), declared sizes and
shapes are checked against the file and the network (built on the meta device)
before any tensor is read, archives that would expand beyond a limit are refused,
pickles are only read with ``weights_only=True`` and NaN/Inf weights are refused.
Every problem is a :class:`~napari_clipdenoise.errors.CheckpointError` that names it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import secrets
import struct
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
    format: str  # "reference" or "project"
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


#: Largest safetensors header read (a project header is a few tens of kB).
MAX_HEADER_BYTES = 16 << 20
#: Largest uncompressed size of a torch archive (the authors' checkpoints are ~150 MB).
MAX_ARCHIVE_BYTES = 1 << 30
#: Largest pickle inside a torch archive (a state dict's is ~50 kB); it is read into memory.
MAX_PICKLE_BYTES = 64 << 20
#: Largest expansion of a compressed member of an archive (torch.save never compresses).
MAX_EXPANSION = 100
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch's legacy (pre-1.6) format
_SAFETENSORS_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
BIOIMAGEIO_DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header declares it (checked against the file size)."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def sniff_format(path: str | os.PathLike) -> str:
    """Decide a weights file's format from its structure, never from a first byte.

    Returns ``safetensors`` (a header length, a JSON header that fits the file and
    tensor extents that tile the rest), ``torchscript`` / ``torch-zip`` (a zip
    archive with torch's record layout), ``bioimageio`` (a zip archive or folder with
    a ``rdf.yaml``/``bioimageio.yaml`` description), ``torch-legacy`` (torch's
    pre-1.6 format: a pickle of its magic number first) or ``pickle`` (a plain
    Python pickle); anything else is a CheckpointError.
    """
    path = Path(path)
    if path.is_dir():
        if any((path / name).is_file() for name in BIOIMAGEIO_DESCRIPTIONS):
            return "bioimageio"
        raise CheckpointError(f"{path} is a folder, not a checkpoint (nor a BioImage Model Zoo package folder)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes): {path}; download it again")
    try:
        safetensors_layout(path)
    except CheckpointError as exc:
        safetensors_problem = exc
    else:
        return "safetensors"
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    pickle_kind = _pickle_kind(path)
    if pickle_kind:
        return pickle_kind
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        raise safetensors_problem  # laid out as safetensors, but its header does not hold up: say why
    if head[:2] == b"PK":
        raise CheckpointError(
            f"{path} starts like a zip archive but has no valid zip directory: it is truncated or corrupt; download it again"
        )
    raise CheckpointError(
        f"{path} is not a checkpoint this project can read (expected a .safetensors file, a torch .pth/.pt/.bin"
        " file or a BioImage Model Zoo package)"
    )


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is a zip archive but is corrupt ({exc}); download it again") from None
    if any(name in BIOIMAGEIO_DESCRIPTIONS for name in names):
        return "bioimageio"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names) or "data.pkl" in names:
        return "torch-zip"
    raise CheckpointError(f"{path} is a zip archive but neither a torch checkpoint nor a BioImage Model Zoo package")


def _pickle_kind(path: Path) -> str | None:
    """``torch-legacy``, ``pickle`` or None: walks the first pickle's opcodes (nothing is unpickled)."""
    import pickletools

    ops = []
    try:
        with open(path, "rb") as handle:
            for op, arg, _ in pickletools.genops(handle):
                ops.append((op.name, arg))
                if op.name == "STOP" or len(ops) >= 64:
                    break
    except Exception:  # not a pickle stream: unknown opcode, truncated argument
        return None
    if not ops or ops[0][0] != "PROTO" or not 2 <= (ops[0][1] or 0) <= 5:
        return None
    if [name for name, _ in ops[:3]] == ["PROTO", "LONG1", "STOP"] and ops[1][1] == _TORCH_MAGIC:
        return "torch-legacy"
    if ops[-1][0] == "STOP" or len(ops) >= 64:
        return "pickle"
    return None


def safetensors_layout(path: str | os.PathLike) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Read and check a safetensors header without reading a tensor: ``(entries, metadata)``.

    The declared header length must fit the file and :data:`MAX_HEADER_BYTES`, the
    header must be a JSON object, every tensor's dtype known, its shape a list of
    non-negative integers whose byte size equals its extent, and the extents must
    tile the data area exactly. Raises CheckpointError naming the first problem.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        first = handle.read(8)
        if len(first) < 8:
            raise CheckpointError(f"{path} is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", first)
        if not 2 <= length <= min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path}: declares a safetensors header of {length} bytes, which does not fit the file ({size} bytes)"
            )
        raw = handle.read(length)
    if raw[:1] != b"{":
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8").rstrip(" "))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: the safetensors metadata is not a mapping of strings")
    data_size = size - 8 - length
    entries, extents = {}, []
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where} is not described by dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{where} has an unknown dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_whole(n) for n in shape):
            raise CheckpointError(f"{where} declares an invalid shape {shape!r}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(n) for n in offsets):
            raise CheckpointError(f"{where} declares invalid data offsets {offsets!r}")
        begin, end = offsets
        nbytes = math.prod(shape) * _SAFETENSORS_DTYPES[dtype]
        if not begin <= end <= data_size or end - begin != nbytes:
            raise CheckpointError(
                f"{where} declares shape {shape} ({nbytes} bytes) at bytes {begin}..{end}, which the file"
                f" ({data_size} bytes of data) does not hold"
            )
        entries[name] = TensorEntry(dtype, tuple(shape), nbytes)
        extents.append((begin, end))
    position = 0
    for begin, end in sorted(extents):
        if begin != position:
            raise CheckpointError(f"{path}: tensor data overlaps or leaves gaps (at byte {begin}); the file is corrupt")
        position = end
    if position != data_size:
        raise CheckpointError(f"{path}: {data_size - position} bytes after the last tensor; the file is corrupt")
    return entries, metadata


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_torch_archive(path: Path) -> bool:
    """Refuse a torch archive that would expand beyond the limits; True when it can be memory-mapped."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is a zip archive but is corrupt ({exc}); download it again") from None
    total = sum(member.file_size for member in members)
    if total > MAX_ARCHIVE_BYTES:
        raise CheckpointError(
            f"{path} would expand to {total / 2**20:.0f} MiB, more than the {MAX_ARCHIVE_BYTES >> 20} MiB a"
            " checkpoint of this network can need; it is not a checkpoint of this project's network"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.compress_type != zipfile.ZIP_STORED and ratio > MAX_EXPANSION:
            raise CheckpointError(
                f"{path}: member {member.filename} is compressed {ratio:.0f}:1 ({member.compress_size} bytes"
                f" expand to {member.file_size}); torch.save never compresses, so this file was altered: refusing it"
            )
        if member.filename.endswith("data.pkl") and member.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(
                f"{path}: its pickle is {member.file_size / 2**20:.0f} MiB, more than the"
                f" {MAX_PICKLE_BYTES >> 20} MiB a state dict needs; refusing it"
            )
    return all(member.compress_type == zipfile.ZIP_STORED for member in members)


def _torch_error(exc: BaseException) -> str:
    """torch.load's complaint in words for users, without its advice to retry unsafely."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"it holds a Python object ({found.group(1)}) that is not a tensor; files like that are never"
            " unpickled here, because unpickling them can run code"
        )
    detail = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    line = detail.group(1) if detail else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    sentences = [s for s in re.split(r"(?<=[.;])\s+", line) if not re.search(r"weights_only|safe_globals|trust", s)]
    return (" ".join(sentences) or "it holds content that is not plain tensors")[:300]


def _torch_load(path: Path) -> object:
    """Load a torch zip archive's plain tensors (``weights_only=True``), checked before anything is allocated."""
    kind = sniff_format(path)
    if kind == "torch-legacy":
        raise CheckpointError(
            f"{path} was written in torch's legacy (pre-1.6) format, which is not read here: its declared storage"
            " sizes cannot be checked before loading. Re-save it with a current torch in an environment you trust"
        )
    if kind == "pickle":
        raise CheckpointError(
            f"{path} is a plain Python pickle, not a torch checkpoint; it is never unpickled here, because"
            " unpickling can run code. Save the state dict with torch.save"
        )
    if kind != "torch-zip":
        raise CheckpointError(f"{path} is a {kind} file, not a torch checkpoint")
    mappable = _check_torch_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mappable)
    except Exception as exc:  # pickle errors, truncated archives, unsafe globals, bad storage sizes
        raise CheckpointError(f"could not read {path} as a torch checkpoint: {_torch_error(exc)}") from None


def _read_safetensors(
    path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; with ``expected``, names and shapes are checked first."""
    from safetensors import safe_open

    entries, metadata = safetensors_layout(path)
    if expected is not None:
        problem = describe_mismatch({k: v[0] for k, v in expected.items()}, {k: e.shape for k, e in entries.items()})
        if problem:
            raise CheckpointError(f"{path} does not fit the CLIPDenoiser network: {problem}")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    except Exception as exc:
        raise CheckpointError(f"could not read {path} as safetensors: {exc}; the file may be truncated") from None
    return tensors, metadata


def validate_config(raw: object, source: str) -> NetworkConfig:
    """A :class:`NetworkConfig` from a file's declared config, every value checked (CheckpointError otherwise)."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: its network config is a {type(raw).__name__}, not a mapping")
    problems = []
    for key in ("in_channels", "out_channels"):
        value = raw.get(key, 3)
        if not _whole(value) or value not in (1, 3):
            problems.append(f"{key} must be 1 or 3, got {value!r}")
    if not isinstance(raw.get("bias", False), bool):
        problems.append(f"bias must be true or false, got {raw.get('bias')!r}")
    for key, low, high in (("negative_slope", 0.0, 1.0), ("feature_aug_level", 0.0, 1.0)):
        value = raw.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
            problems.append(f"{key} must be a number in [{low}, {high}), got {value!r}")
    if problems:
        raise CheckpointError(f"{source}: its network config is not one of this network: " + "; ".join(problems))
    return NetworkConfig.from_dict(raw)


@functools.cache
def expected_state(config: NetworkConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the state dict of ``CLIPDenoiser(config)`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        network = CLIPDenoiser(config)
    return {name: (tuple(t.shape), t.dtype) for name, t in network.state_dict().items()}


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """CheckpointError naming the tensors that hold NaN or infinite values."""
    # a float64 sum is finite exactly when every element is (float32 values cannot overflow it), and is
    # several times cheaper than isfinite(t).all(), which allocates a mask per tensor
    bad = sorted(
        k for k, t in state.items() if t.is_floating_point() and not math.isfinite(float(t.sum(dtype=torch.float64)))
    )
    if bad:
        shown = ", ".join(bad[:6]) + (f", ... ({len(bad) - 6} more)" if len(bad) > 6 else "")
        raise CheckpointError(
            f"{source} holds NaN or infinite weights in {len(bad)} tensor(s): {shown}. The file is corrupt or its"
            " training diverged; it cannot denoise"
        )


def _shape(value) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def describe_mismatch(expected: dict, given: dict, limit: int = 12) -> str:
    """Human-readable list of missing, unexpected and mis-shaped keys ('' when they fit).

    Values are tensors or shapes (tuples), so a file's declared shapes can be
    compared with the network's before any tensor is read.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k}: file {_shape(given[k])} vs network {_shape(expected[k])}"
        for k in set(expected) & set(given)
        if _shape(expected[k]) != _shape(given[k])
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


def network_from_state_dict(state: dict[str, torch.Tensor], config: NetworkConfig, source: str) -> CLIPDenoiser:
    """Build ``CLIPDenoiser(config)`` and load ``state`` into it; names and shapes are checked before building."""
    problem = describe_mismatch({k: v[0] for k, v in expected_state(config).items()}, state)
    if problem:
        raise CheckpointError(f"{source} does not fit the CLIPDenoiser network: {problem}")
    check_finite(state, source)
    network = CLIPDenoiser(config)
    load_state_dict_strict(network, state, source)
    return network.eval()


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
    odd = [str(k) for k, v in params.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise CheckpointError(f"{path}: its state dict holds {len(odd)} entries that are not named tensors: {odd[:5]}")
    return {k.removeprefix("module."): v for k, v in params.items()}


def config_from_state_dict(params: dict[str, torch.Tensor], source: str) -> NetworkConfig:
    """Infer in/out channels and bias from the tensor shapes of a CLIPDenoiser state dict (checked)."""
    last = params.get("last.weight")
    if last is None:
        raise CheckpointError(f"{source} has no 'last.weight': it is not a CLIPDenoiser checkpoint")
    if last.ndim != 4:
        raise CheckpointError(f"{source}: 'last.weight' has shape {tuple(last.shape)}, not that of a 3x3 convolution")
    in_channels = 1 if "first.weight" in params else 3
    bias = any(k.endswith(".bias") and not k.startswith("encoder.") for k in params)
    raw = {"in_channels": in_channels, "out_channels": int(last.shape[0]), "bias": bias}
    return validate_config(raw, source)


def load_reference_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Load an authors' BasicSR checkpoint strictly (layer4 keys are read and dropped)."""
    path = Path(path)
    params = _reference_params(_torch_load(path), path)
    ignored = sorted(k for k in params if k.startswith(_IGNORED_REFERENCE_PREFIXES))
    used = {k: v for k, v in params.items() if not k.startswith(_IGNORED_REFERENCE_PREFIXES)}
    network = network_from_state_dict(used, config_from_state_dict(used, str(path)), str(path))
    metadata = {
        "format": "reference",
        "source_file": path.name,
        "source_sha256": file_sha256(path),
        "config": network.config.to_dict(),
        "in_channels": network.in_channels,
        "out_channels": network.out_channels,
    }
    return LoadedCheckpoint(network, "reference", metadata, ignored)


# ------------------------------------------------------------------ project format
def _create_file(folder: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """Create a new empty file in ``folder`` (a name nobody else uses)."""
    while True:
        candidate = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file the permissions a plain ``open(path, "w")`` would (writers that use private temp files give 0600)."""
    os.chmod(path, 0o666 & ~current_umask())


def save_checkpoint(network: CLIPDenoiser, path: str | os.PathLike, metadata: dict | None = None) -> dict:
    """Write ``network`` in the project format (atomically) and return the metadata written.

    ``metadata`` may carry ``name``, ``description``, ``noise`` (what it was trained
    on), ``recipe`` (training settings) and anything else JSON-serialisable. The
    file's permissions follow the umask, so a shared model cache stays shared.
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
    tmp = _create_file(path.parent, f".{path.name}.")
    try:
        save_file(state, tmp, metadata=header)
        follow_umask(tmp)  # a shared model cache stays shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


def _network_config(network) -> dict:
    if getattr(network, "family", "clip") == "idf":
        return {"family": "idf", "iterations": int(network.iterations)}
    return network.config.to_dict()


def _project_metadata(path: Path, header: dict[str, str]) -> dict:
    if header.get("format") != PROJECT_FORMAT or "metadata" not in header:
        raise CheckpointError(
            f"{path} is a safetensors file but not a napari-clipdenoise checkpoint (no '{PROJECT_FORMAT}' metadata);"
            " CLIP encoder weights are used by training, not for denoising"
        )
    try:
        metadata = json.loads(header["metadata"])
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: its napari-clipdenoise metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: its napari-clipdenoise metadata is not a JSON object")
    return metadata


def read_project_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a project-format file, without loading its tensors."""
    path = Path(path)
    if sniff_format(path) != "safetensors":
        raise CheckpointError(f"{path} is not a project-format .safetensors checkpoint")
    _, header = safetensors_layout(path)
    return _project_metadata(path, header)


def load_project_checkpoint(path: str | os.PathLike, *, verify: bool = True) -> LoadedCheckpoint:
    path = Path(path)
    metadata = read_project_metadata(path)
    if metadata.get("family", "clip") == "idf":
        return _load_idf_project(path, metadata, verify)
    config = validate_config(metadata.get("config", {}), str(path))
    config = dataclasses.replace(config, feature_aug_level=0.0)  # augmentation is for training only
    state, _ = _read_safetensors(path, expected_state(config))
    if verify and metadata.get("weights_sha256") and state_dict_sha256(state) != metadata["weights_sha256"]:
        raise CheckpointError(f"{path}: the weights do not match the sha256 recorded in the file; it is corrupt")
    network = network_from_state_dict(state, config, str(path))
    return LoadedCheckpoint(network, "project", metadata)


def idf_expected() -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    from .idf import STATE_SHAPES

    return {key: (shape, torch.float32) for key, shape in STATE_SHAPES.items()}


def _load_idf_project(path: Path, metadata: dict, verify: bool) -> LoadedCheckpoint:
    from .idf import network_from_state

    state, _ = _read_safetensors(path, idf_expected())
    if verify and metadata.get("weights_sha256") and state_dict_sha256(state) != metadata["weights_sha256"]:
        raise CheckpointError(f"{path}: the weights do not match the sha256 recorded in the file; it is corrupt")
    return LoadedCheckpoint(network_from_state(state, str(path)), "project", metadata)


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
    check_finite(keep, source)
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
