"""What keeps outputs from harming data: which paths may be written, disk space, write errors, completeness.

Every face that writes a result (the batch, the dask engine) asks these
functions, so the rules are the same everywhere:

- :func:`check_not_input`: an output is never an input, inside an input store or
  around one.
- :func:`is_clipdenoise_output`: whether an existing path was written by this
  software (only such paths are ever replaced, and only when asked).
- :func:`reserve_space`: allocate a memory-mapped output's blocks before it is
  filled, so a full disk is an ``OSError`` at creation instead of a SIGBUS later.
- :func:`write_error_message`: an ``OSError`` while writing, in words
  ("no space left on /mnt/data while writing ...").
- :func:`output_problem`: why an existing output is incomplete (truncated), or None.
- :func:`input_signature`: size and modification time of an input file, or of
  every file of an input folder (zarr store), to tell whether it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: Attribute keys under which the batch (formats) and the dask engine store provenance in zarr outputs.
ZARR_PROVENANCE_KEYS = ("clipdenoise_provenance", "napari_clipdenoise")
#: The dask engine's job folder inside an unfinished output.
ENGINE_STATE_DIR = ".clipdenoise"
#: Larger JSON files are not read to decide whether they are ours.
_MAX_JSON_BYTES = 64 * 1024 * 1024


# ------------------------------------------------------------------ where outputs may go
def check_not_input(output: str | os.PathLike, inputs) -> None:
    """Raise ValueError when ``output`` is one of ``inputs``, inside one (a store) or holds one.

    Paths are compared with symbolic links resolved. Used by the batch for every
    output and by the dask engine, so ``-o`` into an input store is refused on every path.
    """
    target = Path(output).expanduser().resolve()
    for item in inputs:
        path = Path(item).expanduser().resolve()
        if target == path or path in target.parents or target in path.parents:
            raise ValueError(
                f"the output {target} is the input {path} or inside/around it; write the result to another folder"
            )


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` (symbolic links resolved) is ``root`` or below it."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    return resolved == base or base in resolved.parents


def _json_document(path: Path):
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def is_provenance_sidecar(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a JSON provenance record written by napari-clipdenoise."""
    document = _json_document(Path(path))
    return isinstance(document, dict) and document.get("software") == "napari-clipdenoise"


def is_clipdenoise_output(path: str | os.PathLike) -> bool:
    """Whether the existing ``path`` was written by napari-clipdenoise (its provenance says so).

    Files: provenance in the file's metadata or its ``.json`` sidecar. Folders: a DICOM
    series whose files carry the provenance element,
    a zarr store carrying the batch's or the dask engine's provenance attribute,
    or the dask engine's job folder (an unfinished block-by-block output).
    """
    path = Path(path)
    if path.is_dir():
        if (path / ENGINE_STATE_DIR / "job.json").is_file():
            return True
        from .dicom import is_dicom_dir

        if is_dicom_dir(path):  # a derived DICOM series: the provenance element of its files
            from .dispatch import read_provenance

            try:
                provenance = read_provenance(path)
            except Exception:  # noqa: BLE001 - unreadable or foreign: not ours
                return False
            return isinstance(provenance, dict) and provenance.get("software") == "napari-clipdenoise"
        for name in ("zarr.json", ".zattrs"):
            document = _json_document(path / name)
            if isinstance(document, dict):
                attributes = document.get("attributes", document) if name == "zarr.json" else document
                if isinstance(attributes, dict) and any(key in attributes for key in ZARR_PROVENANCE_KEYS):
                    return True
        return False
    if not path.is_file():
        return False
    from .dispatch import read_provenance

    try:
        provenance = read_provenance(path)
    except Exception:  # noqa: BLE001 - unreadable, foreign or corrupt: not ours
        return False
    return isinstance(provenance, dict) and provenance.get("software") == "napari-clipdenoise"


# ------------------------------------------------------------------ completeness and input identity
def output_problem(path: str | os.PathLike) -> str | None:
    """Why the existing output ``path`` is incomplete (e.g. truncated), or None when it looks whole.

    TIFF: every strip or tile of every page lies inside the file; NPY: the file
    is as long as its header says; PNG: it ends with the IEND chunk; JPEG: with
    the end-of-image marker; zarr: its metadata opens with a shape.
    """
    from .dispatch import format_of

    path = Path(path)
    try:
        kind = format_of(path)
        if kind == "tiff":
            return _tiff_problem(path)
        if kind == "npy":
            return _npy_problem(path)
        if kind in ("png", "jpeg"):
            size = path.stat().st_size
            with open(path, "rb") as handle:
                handle.seek(max(0, size - 12))
                tail = handle.read()
            if kind == "png" and not tail.endswith(b"IEND\xaeB`\x82"):
                return "the PNG file has no end chunk (truncated)"
            if kind == "jpeg" and not tail.endswith(b"\xff\xd9"):
                return "the JPEG file has no end-of-image marker (truncated)"
            return None
        if kind == "zarr":
            import zarr

            zarr.open(str(path), mode="r")
            return None
    except Exception as exc:  # noqa: BLE001 - any failure to read it back means it is not whole
        return f"it cannot be read back ({type(exc).__name__}: {exc})"
    return None


def _tiff_problem(path: Path) -> str | None:
    import tifffile

    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            return "the TIFF file holds no pages (truncated)"
        for index, page in enumerate(tif.pages):
            ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)]
            if not ends or max(ends) > size:
                return f"page {index} of the TIFF file lies beyond its end ({size} bytes): truncated"
    return None


def _npy_problem(path: Path) -> str | None:
    import numpy as np

    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(handle)
        expected = handle.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size < expected:
        return f"the NPY file has {size} bytes, its header needs {expected}: truncated"
    return None


def input_signature(path: str | os.PathLike) -> dict:
    """What identifies an input's content cheaply: size and modification time (of every file of a folder).

    A folder (zarr store) gives the number of files, their total size and a digest
    of each file's relative path, size and modification time, so a chunk rewritten
    in place changes it. Content rewritten with the same size and time is not noticed.
    """
    path = Path(path)
    if not path.is_dir():
        stat = path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    digest = hashlib.sha256()
    count = total = 0
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            relative = os.path.relpath(full, path)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count += 1
            total += stat.st_size
    return {"files": count, "bytes": total, "digest": digest.hexdigest()[:32]}


__all__ = [
    "check_not_input",
    "input_signature",
    "is_clipdenoise_output",
    "is_inside",
    "is_provenance_sidecar",
    "output_problem",
]
