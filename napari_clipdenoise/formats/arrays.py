"""NPY files and zarr arrays in and out (both read lazily, both filled plane by plane).

NPY inputs are memory-mapped; outputs are ``.npy`` memory maps with a JSON
provenance sidecar. Zarr inputs are plain zarr arrays (v2 or v3) given by their
directory; outputs keep the input's chunks, shards, compressors, attributes and
dimension names, with the provenance under the ``clipdenoise_provenance`` attribute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import ImageSource, OutputSink, UnreadableImageError
from .disk import reserve_space
from .provenance import PROVENANCE_KEY


# ----------------------------------------------------------------------------- NPY
def read_npy(path: Path) -> ImageSource:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise UnreadableImageError(f"not a readable NPY array ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, np.ndarray):
        raise UnreadableImageError("the file holds several arrays (.npz-like); save one array per .npy file")
    return ImageSource(path, "npy", data)


class NpySink(OutputSink):
    embeds_provenance = False

    def __init__(self, temporary: Path, shape, dtype):
        self.array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
        try:
            reserve_space(temporary)  # a full disk fails here, not with SIGBUS while the map is filled
        except BaseException:
            self.abort()
            raise

    def finish(self, result) -> None:
        self.array.flush()
        self.abort()

    def abort(self) -> None:
        mm = getattr(self.array, "_mmap", None)
        self.array = None
        if mm is not None:
            mm.close()


# ---------------------------------------------------------------------------- zarr
def is_zarr_array_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zarray").is_file())


def is_zarr_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))


_NAME_LETTERS = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}


def _axes_from_names(names) -> str | None:
    if not names or any(n is None for n in names):
        return None
    letters = "".join(_NAME_LETTERS.get(str(n).lower(), str(n)[:1].upper()) for n in names)
    valid = len(set(letters)) == len(letters) and letters.isalpha() and "Y" in letters and "X" in letters
    return letters if valid else None


def _ome_zarr_axes(array_path: Path) -> list | None:
    """Axis names from the parent OME-Zarr group's ``multiscales`` metadata, if any."""
    parent = array_path.parent
    for name in ("zarr.json", ".zattrs"):
        meta_file = parent / name
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                return None
            attrs = meta.get("attributes", meta)
            attrs = attrs.get("ome", attrs)
            multiscales = attrs.get("multiscales") or []
            if multiscales and "axes" in multiscales[0]:
                return [a["name"] if isinstance(a, dict) else a for a in multiscales[0]["axes"]]
    return None


def read_zarr(path: Path) -> ImageSource:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise UnreadableImageError(f"not a readable zarr store ({type(exc).__name__}: {exc})") from exc
    if not isinstance(node, zarr.Array):
        arrays = sorted(name for name, _ in node.arrays())
        hint = f"; pass one of its arrays, e.g. {path / arrays[0]}" if arrays else " with no arrays"
        raise UnreadableImageError(f"is a zarr group, not an array{hint}")
    names = getattr(node.metadata, "dimension_names", None) or node.attrs.get("_ARRAY_DIMENSIONS")
    axes, source = _axes_from_names(names), "zarr dimension names"
    if axes is None:
        axes, source = _axes_from_names(_ome_zarr_axes(path)), "OME-Zarr axes"
    return ImageSource(path, "zarr", node, axes, source if axes else "guessed from the shape", {"array": node})


class ZarrSink(OutputSink):
    """A zarr array with the input's layout, created in the temporary folder and filled by the core."""

    def __init__(self, temporary: Path, source: ImageSource, shape, dtype, provenance: dict, axes: str | None = None):
        import zarr

        if source.kind != "zarr":  # written as zarr from another format: one chunk per plane, up to 1024 x 1024
            self.array = _new_zarr(temporary, shape, dtype, provenance, axes or source.axes)
            return
        src = source.info["array"]
        attributes = dict(src.attrs)
        attributes[PROVENANCE_KEY] = provenance
        zarr_format = src.metadata.zarr_format
        options: dict = {"chunks": src.chunks, "compressors": src.compressors, "zarr_format": zarr_format}
        if zarr_format == 3:
            if src.shards is not None:
                options["shards"] = src.shards
            if getattr(src.metadata, "dimension_names", None):
                options["dimension_names"] = src.metadata.dimension_names
        self.array = zarr.create_array(
            store=str(temporary),
            shape=tuple(shape),
            dtype=np.dtype(dtype),
            fill_value=0,
            attributes=json.loads(json.dumps(attributes, default=str)),
            **options,
        )

    def finish(self, result) -> None:
        self.array = None


def _new_zarr(temporary: Path, shape, dtype, provenance: dict, axes: str | None):
    import zarr

    shape = tuple(int(s) for s in shape)
    chunks = [1] * len(shape)
    if axes and len(axes) == len(shape):
        for index, letter in enumerate(axes):
            if letter in "YX":
                chunks[index] = min(shape[index], 1024)
            elif letter in "CS":
                chunks[index] = shape[index]
    else:
        chunks[-2:] = [min(s, 1024) for s in shape[-2:]]
    names = tuple(letter.lower() for letter in axes) if axes and len(axes) == len(shape) else None
    return zarr.create_array(
        store=str(temporary),
        shape=shape,
        dtype=np.dtype(dtype),
        chunks=tuple(chunks),
        fill_value=0,
        dimension_names=names,
        attributes=json.loads(json.dumps({PROVENANCE_KEY: provenance}, default=str)),
    )


def read_zarr_provenance(path: Path) -> dict | None:
    import zarr

    return zarr.open_array(str(path), mode="r").attrs.get(PROVENANCE_KEY)
