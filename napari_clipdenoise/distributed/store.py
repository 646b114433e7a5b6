"""Zarr / OME-Zarr input and output for the block engine.

- :func:`open_input`: a zarr array, a path to a zarr array or OME-Zarr group
  (its first multiscale level), or a dask/numpy array -> :class:`InputSource`.
- :func:`create_output`: the output store, created once with the input's shape,
  chunks, shards, codecs and (for OME-Zarr) its group metadata and pyramid levels.
- :class:`JobState`: the job record and per-block completion markers kept in
  ``<output>/.clipdenoise/`` (files written atomically: temp file + rename) while
  the job runs; :func:`mark_complete` replaces them by a record in the root
  attributes when it has finished.
- :func:`downsample_level`: one pyramid level recomputed from the level above.

Completion is recorded by marker files, never inferred from chunk files: zarr
does not write chunks that equal the fill value.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STATE_DIR = ".clipdenoise"
JOB_FILE = "job.json"
DONE_DIR = "done"
PYRAMID_FILE = "pyramid.json"


@dataclass(frozen=True)
class ZarrLocation:
    """A zarr array on a filesystem every worker can read: the store root and the array's path in it."""

    root: str
    path: str = ""

    def open(self, mode: str = "r"):
        import zarr

        return zarr.open_array(self.root, path=self.path or None, mode=mode)


@dataclass
class OmeInfo:
    """The OME-NGFF (0.4 or 0.5) multiscales metadata of an input group."""

    version: str
    attributes: dict  # the group's attributes, copied to the output
    dataset_paths: list[str]  # level 0 first
    axes: str | None  # letters, e.g. "CZYX", when the metadata names its axes


@dataclass
class InputSource:
    """What the engine needs to know about its input."""

    array: object  # zarr.Array or dask array, for planning on the client
    description: str
    location: ZarrLocation | None = None  # set when workers can open the input themselves
    group_root: str | None = None
    group: object = None  # the zarr.Group of an OME-Zarr input
    ome: OmeInfo | None = None
    zarr_format: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def is_zarr(self) -> bool:
        return self.zarr_format is not None

    def write_unit(self) -> tuple[int, ...]:
        """The shard shape of a sharded zarr array, else its chunk shape (regular dask chunks for dask input)."""
        if self.is_zarr:
            shards = getattr(self.array, "shards", None)
            return tuple(int(s) for s in (shards or self.array.chunks))
        return regular_chunks(self.array)

    def local_paths(self) -> list[Path]:
        paths = []
        for text in (self.group_root, self.location.root if self.location else None):
            if text:
                paths.append(Path(text).resolve())
        return paths


def regular_chunks(array) -> tuple[int, ...]:
    """The chunk shape of a dask array (the first chunk along each axis)."""
    return tuple(int(c[0]) if len(c) else 1 for c in array.chunks)


def _store_root(array) -> str | None:
    """The filesystem root of a zarr array's store, or None when it is not on a local filesystem."""
    from zarr.storage import LocalStore

    store = array.store
    if isinstance(store, LocalStore):
        return str(Path(store.root).resolve())
    return None


def _ome_axes(axes) -> str | None:
    letters = []
    for axis in axes or []:
        name = axis.get("name") if isinstance(axis, dict) else axis
        if not isinstance(name, str) or len(name) != 1 or not name.isalpha():
            return None
        letters.append(name.upper())
    return "".join(letters) or None


def read_ome(group) -> OmeInfo | None:
    """OME-NGFF multiscales metadata of a zarr group (0.5: under ``"ome"``; 0.4: top level), or None."""
    attributes = dict(group.attrs)
    if isinstance(attributes.get("ome"), dict) and "multiscales" in attributes["ome"]:
        version, multiscales = str(attributes["ome"].get("version", "0.5")), attributes["ome"]["multiscales"]
    elif "multiscales" in attributes:
        multiscales = attributes["multiscales"]
        version = str(multiscales[0].get("version", "0.4")) if multiscales else "0.4"
    else:
        return None
    if not multiscales or not multiscales[0].get("datasets"):
        raise ValueError(f"OME-Zarr group {group.store_path} has 'multiscales' metadata without datasets")
    first = multiscales[0]
    paths = [str(d["path"]) for d in first["datasets"]]
    return OmeInfo(version, attributes, paths, _ome_axes(first.get("axes")))


def open_input(source) -> InputSource:
    """Accept a zarr array, a path to a zarr array or OME-Zarr group, a zarr group, or a dask/numpy array."""
    import zarr

    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is a dependency of this extra
        raise ImportError("the distributed engine needs dask: pip install 'napari-clipdenoise[dask]'") from exc

    if isinstance(source, da.Array):
        return InputSource(source, f"dask array {source.shape} {source.dtype}")
    if isinstance(source, np.ndarray):
        return InputSource(da.from_array(source, chunks="auto"), f"numpy array {source.shape} {source.dtype}")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"input {path} does not exist; give a zarr array or OME-Zarr folder")
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:
            raise ValueError(
                f"input {path} is not a zarr array or group ({exc}); convert TIFF stacks first,"
                " e.g. zarr.create_array(path, data=tifffile.imread(...), chunks=(1, 1024, 1024))"
            ) from exc
        return _from_node(node, str(path.resolve()))
    if isinstance(source, zarr.Group):
        return _from_node(source, _store_root(source))
    if isinstance(source, zarr.Array):
        return _from_node(source, _store_root(source))
    raise TypeError(
        "input must be a zarr array, a path to a zarr array or OME-Zarr group, or a dask array;"
        f" got {type(source).__name__}"
    )


def _from_node(node, root: str | None) -> InputSource:
    import dask.array as da
    import zarr

    if isinstance(node, zarr.Array):
        fmt = node.metadata.zarr_format
        store_root = _store_root(node)
        if store_root is None:  # e.g. a MemoryStore: workers cannot open it, ship the data through dask
            return InputSource(da.from_array(node, chunks=node.chunks), f"zarr array {node.shape} in memory")
        location = ZarrLocation(store_root, node.path)
        return InputSource(node, f"zarr array {os.path.join(store_root, node.path)}", location, zarr_format=fmt)
    ome = read_ome(node)
    if ome is not None:
        level = node[ome.dataset_paths[0]]
    elif "0" in node and isinstance(node["0"], zarr.Array):
        level = node["0"]
    else:
        arrays = sorted(name for name, member in node.members() if isinstance(member, zarr.Array))
        raise ValueError(
            f"zarr group {root or node.store_path} has no OME-Zarr 'multiscales' metadata and no array '0';"
            f" arrays in it: {arrays or 'none'}. Pass the array itself (a path to it)"
        )
    store_root = _store_root(level)
    if store_root is None:
        description = f"zarr group level {level.path} in memory"
        return InputSource(da.from_array(level, chunks=level.chunks), description)
    source = InputSource(
        level,
        f"OME-Zarr {store_root} level {level.path!r}" if ome else f"zarr group {store_root} array '0'",
        ZarrLocation(store_root, level.path),
        group_root=root if ome else None,
        group=node if ome else None,
        ome=ome,
        zarr_format=level.metadata.zarr_format,
    )
    return source


# ---------------------------------------------------------------- output creation


@dataclass
class OutputTarget:
    """The output store: level 0 (written by the blocks) and further pyramid levels."""

    root: Path
    level0: ZarrLocation
    levels: list[ZarrLocation] = field(default_factory=list)  # level 1, 2, ... (OME pyramids)

    @property
    def state(self) -> JobState:
        return JobState(self.root)


def _array_options(array, dtype: np.dtype) -> dict:
    """Creation options copying an existing zarr array's chunking, codecs and fill value, for values of ``dtype``."""
    meta = array.metadata
    fill_value = array.fill_value if np.dtype(dtype) == np.dtype(array.dtype) else 0
    options = dict(
        shape=array.shape,
        dtype=dtype,
        chunks=array.chunks,
        fill_value=fill_value,
        zarr_format=meta.zarr_format,
        compressors=array.compressors,
        filters=array.filters,
    )
    if meta.zarr_format == 3:
        options.update(
            shards=array.shards,
            serializer=array.serializer,
            dimension_names=meta.dimension_names,
            chunk_key_encoding=meta.chunk_key_encoding,
        )
    return options


def create_output(source: InputSource, output_path: Path, provenance: dict, dtype=None) -> OutputTarget:
    """Create the output store, empty, mirroring the input's layout and metadata.

    OME-Zarr inputs give an OME-Zarr output group with every multiscale level the
    input has (levels after 0 are filled by :func:`downsample_level` at the end);
    the group's attributes are copied and ``provenance`` is added under
    ``"napari_clipdenoise"``. Other inputs give a single array. ``dtype``: the
    output's dtype (default: the input's).
    """
    import zarr

    root = Path(output_path)
    dtype = source.dtype if dtype is None else np.dtype(dtype)
    if source.ome is not None:
        group = zarr.open_group(str(root), mode="w-", zarr_format=source.zarr_format)
        attributes = dict(source.ome.attributes)
        attributes[PROVENANCE_KEY] = provenance
        group.attrs.update(attributes)
        locations = []
        for path in source.ome.dataset_paths:
            level = source.group[path]
            zarr.create_array(group.store, name=path, **_array_options(level, dtype), attributes=dict(level.attrs))
            locations.append(ZarrLocation(str(root.resolve()), path))
        return OutputTarget(root, locations[0], locations[1:])
    if source.is_zarr:
        options = _array_options(source.array, dtype)
        attributes = {**dict(source.array.attrs), PROVENANCE_KEY: provenance}
    else:
        options = dict(shape=source.shape, dtype=dtype, chunks=regular_chunks(source.array), zarr_format=3)
        attributes = {PROVENANCE_KEY: provenance}
    zarr.create_array(str(root), **options, attributes=attributes)
    return OutputTarget(root, ZarrLocation(str(root.resolve()), ""))


def open_output(source: InputSource, output_path: Path) -> OutputTarget:
    """The :class:`OutputTarget` of an output created earlier by :func:`create_output`."""
    root = Path(output_path).resolve()
    if source.ome is not None:
        locations = [ZarrLocation(str(root), path) for path in source.ome.dataset_paths]
        return OutputTarget(root, locations[0], locations[1:])
    return OutputTarget(root, ZarrLocation(str(root), ""))


# ---------------------------------------------------------------- job state and markers


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class JobState:
    """The job record and completion markers in ``<output>/.clipdenoise/``."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.folder = self.root / STATE_DIR

    @property
    def job_file(self) -> Path:
        return self.folder / JOB_FILE

    @property
    def done_folder(self) -> Path:
        return self.folder / DONE_DIR

    def read_job(self) -> dict | None:
        try:
            return json.loads(self.job_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"the job record {self.job_file} is unreadable ({exc}); pass overwrite=True to start over"
            ) from exc

    def write_job(self, job: dict) -> None:
        write_atomic(self.job_file, json.dumps(job, indent=1, sort_keys=True))

    def marker(self, key: str) -> Path:
        return self.done_folder / key

    def mark_done(self, key: str, info: dict) -> None:
        write_atomic(self.marker(key), json.dumps(info, sort_keys=True))

    def done_keys(self) -> set[str]:
        if not self.done_folder.is_dir():
            return set()
        return {p.name for p in self.done_folder.iterdir() if not p.name.startswith(".")}

    def pyramid_done(self, fingerprint: str) -> bool:
        try:
            return json.loads((self.folder / PYRAMID_FILE).read_text()).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            return False

    def mark_pyramid(self, fingerprint: str, levels: int) -> None:
        write_atomic(self.folder / PYRAMID_FILE, json.dumps({"fingerprint": fingerprint, "levels": levels}))

    def clear_pyramid(self) -> None:
        (self.folder / PYRAMID_FILE).unlink(missing_ok=True)


PROVENANCE_KEY = "napari_clipdenoise"


def read_completion(root: Path) -> dict | None:
    """The completion record a finished job leaves in the output's root attributes, or None."""
    import zarr

    try:
        attributes = dict(zarr.open(str(root), mode="r").attrs)
    except Exception:
        return None
    provenance = attributes.get(PROVENANCE_KEY)
    if not isinstance(provenance, dict) or not isinstance(provenance.get("complete"), dict):
        return None
    return {
        **provenance["complete"],
        "identity": provenance.get("job", {}),
        "intensity_ranges": provenance.get("intensity_ranges", []),
    }


def mark_complete(root: Path, fingerprint: str, blocks: int) -> None:
    """Record completion in the root attributes, then drop the job folder: a finished output is plain (OME-)Zarr.

    (zarr warns about unknown folders when it lists a group's members.) If this
    stops between the two steps, the next run finds every block marked done and
    finishes it again.
    """
    import zarr

    node = zarr.open(str(root), mode="r+")
    provenance = dict(node.attrs.get(PROVENANCE_KEY, {}))
    provenance["complete"] = {"fingerprint": fingerprint, "blocks": blocks}
    node.attrs[PROVENANCE_KEY] = provenance
    shutil.rmtree(root / STATE_DIR, ignore_errors=True)


ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup", STATE_DIR)


def remove_output(path: Path) -> None:
    """Delete an earlier output (``overwrite=True``): only a zarr store or an empty folder, never anything else."""
    if not path.exists():
        return
    replaceable = path.is_dir() and (not any(path.iterdir()) or any((path / m).exists() for m in ZARR_MARKERS))
    if not replaceable:
        raise FileExistsError(
            f"{path} is not a zarr store (nor an empty folder); overwrite only replaces earlier outputs."
            " Remove it yourself or choose another output path"
        )
    shutil.rmtree(path)


# ---------------------------------------------------------------- pyramid


def downsample_level(previous, target_shape: tuple[int, ...], dtype: np.dtype):
    """A lazy dask array of ``target_shape``: ``previous`` (dask) block-averaged level by level.

    The factor per axis is the rounded shape ratio (1 for axes that keep their
    size, e.g. channels); the edge is padded by repetition so odd sizes average
    correctly. Integer results are rounded and clipped to ``dtype``.
    """
    import dask.array as da

    factors = {}
    for axis, (before, after) in enumerate(zip(previous.shape, target_shape, strict=True)):
        factor = max(1, int(round(before / after)))
        if factor > 1:
            factors[axis] = factor
        needed = after * factor
        if needed > before:
            pad = [(0, 0)] * previous.ndim
            pad[axis] = (0, needed - before)
            previous = da.pad(previous, pad, mode="edge")
        elif needed < before:
            previous = previous[tuple(slice(0, needed) if a == axis else slice(None) for a in range(previous.ndim))]
    if factors:
        previous = da.coarsen(np.mean, previous.astype(np.float32), factors, trim_excess=True)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return da.clip(da.round(previous), info.min, info.max).astype(dtype)
    return previous.astype(dtype)
