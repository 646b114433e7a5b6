"""TIFF in and out: plain multi-page, ImageJ hyperstacks and OME-TIFF, with their metadata.

Reading: the first series; uncompressed contiguous data is memory-mapped, other
large files are read chunk by chunk through ``tifffile``'s zarr store.
Writing: the same flavour (ImageJ/OME/plain), axes, resolution, photometric
interpretation and ImageJ/OME metadata as the input; provenance in the ImageJ
``Properties``, an OME ``MapAnnotation`` or the JSON image description. Outputs
larger than 2 GB are BigTIFF (except ImageJ files, which ImageJ reads only as classic TIFF).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from .base import (
    DEFAULT_MAX_PIXELS,
    IN_MEMORY_BYTES,
    ImageSource,
    OutputSink,
    UnreadableImageError,
    check_declared_size,
)
from .disk import reserve_space
from .provenance import OME_NAMESPACE, PROVENANCE_KEY, to_json

BIGTIFF_BYTES = 2**31 - 2**25  # leave room for tags and descriptions below 2 GiB
IMAGEJ_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32")}
_IMAGEJ_COMPUTED = ("ImageJ", "images", "channels", "slices", "frames", "hyperstack", "axes")
_OME_PIXEL_KEYS = (
    "PhysicalSizeX",
    "PhysicalSizeXUnit",
    "PhysicalSizeY",
    "PhysicalSizeYUnit",
    "PhysicalSizeZ",
    "PhysicalSizeZUnit",
    "TimeIncrement",
    "TimeIncrementUnit",
    "SignificantBits",
)
_OME_CHANNEL_KEYS = (
    "Name",
    "Color",
    "EmissionWavelength",
    "EmissionWavelengthUnit",
    "ExcitationWavelength",
    "ExcitationWavelengthUnit",
    "Fluor",
    "AcquisitionMode",
    "ContrastMethod",
    "IlluminationType",
)


def _axes_for_core(axes: str) -> str | None:
    """Tifffile's axes string if the core can use it as is (Y and X once, letters unique)."""
    if axes and "Y" in axes and "X" in axes and len(set(axes)) == len(axes) and axes.isalpha():
        return axes
    return None


def _ome_metadata(xml: str) -> dict:
    """The parts of an OME-XML document that describe the first image's pixels and channels."""
    import tifffile

    ome = tifffile.xml2dict(xml).get("OME", {})
    image = ome.get("Image", {})
    if isinstance(image, list):
        image = image[0]
    pixels = image.get("Pixels", {})
    kept = {k: pixels[k] for k in _OME_PIXEL_KEYS if k in pixels}
    for key in ("Name", "Description"):
        if isinstance(image.get(key), (str, int, float)):
            kept[key] = image[key]
    channels = pixels.get("Channel", [])
    channels = [channels] if isinstance(channels, dict) else list(channels)
    if channels:
        per_key = {k: [c.get(k) for c in channels] for k in _OME_CHANNEL_KEYS}
        per_key = {k: v for k, v in per_key.items() if all(x is not None for x in v)}
        if per_key:
            kept["Channel"] = per_key
    return kept


def read_tiff(path: Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageSource:
    """Open the first series of a TIFF; its declared shape is checked against ``max_pixels`` before reading."""
    notes: list[str] = []
    with _tifffile_log(notes):
        source = _read_tiff(path, max_pixels, notes)
    source.notes = notes
    return source


def _read_tiff(path: Path, max_pixels, notes: list[str]) -> ImageSource:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise UnreadableImageError(f"not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    try:
        if not tif.series:
            raise UnreadableImageError("not a readable TIFF file (it holds no image data; truncated or corrupt?)")
        series = tif.series[0]
        page = series.keyframe
        shape = tuple(series.shape)
        dtype = np.dtype(series.dtype)
        check_declared_size(shape, dtype, max_pixels, what="the TIFF file")
        flavour = "ome" if tif.is_ome else "imagej" if tif.is_imagej else "plain"
        info: dict = {
            "flavour": flavour,
            "series_axes": series.axes,
            "photometric": int(page.photometric),
            "planarconfig": int(page.planarconfig),
            "compression": int(page.compression),
            "resolution": tuple(float(r) for r in page.resolution) if "XResolution" in page.tags else None,
            "resolutionunit": int(page.resolutionunit) if "ResolutionUnit" in page.tags else None,
        }
        if len(tif.series) > 1:
            notes.append(f"the file has {len(tif.series)} image series; only the first is denoised")
        if len(series.levels) > 1:
            notes.append(f"the pyramid's {len(series.levels) - 1} reduced levels are not written to the output")
        if flavour == "imagej":
            info["imagej_metadata"] = {
                k: v for k, v in (tif.imagej_metadata or {}).items() if k not in _IMAGEJ_COMPUTED
            }
        elif flavour == "ome":
            info["ome_metadata"] = _ome_metadata(tif.ome_metadata)
        else:
            shaped = tif.shaped_metadata
            if shaped:
                info["shaped_metadata"] = {
                    k: v for k, v in shaped[0].items() if k not in ("shape", "axes", PROVENANCE_KEY)
                }
            elif page.description:
                info["original_description"] = page.description

        nbytes = int(np.prod(shape)) * dtype.itemsize
        data = None
        closer = tif.close
        if nbytes > IN_MEMORY_BYTES and series.dataoffset is not None:
            if series.dataoffset + nbytes > path.stat().st_size:  # a map past the end would SIGBUS when read
                raise UnreadableImageError(
                    f"the TIFF file is truncated: its image data needs {series.dataoffset + nbytes} bytes,"
                    f" the file has {path.stat().st_size}"
                )
            try:
                data = tifffile.memmap(path, series=0, mode="r")
                if tuple(data.shape) != shape:
                    data = data.reshape(shape)
                tif.close()
                closer = None
                notes.append("read lazily (memory-mapped)")
            except Exception:  # noqa: BLE001 - not mappable after all: fall back to chunked reading
                data = None
        if data is None and nbytes > IN_MEMORY_BYTES:
            import zarr

            data = zarr.open(series.aszarr(), mode="r")
            notes.append("read lazily (chunk by chunk)")
        if data is None:
            data = series.asarray()
            tif.close()
            closer = None
    except UnreadableImageError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise UnreadableImageError(f"TIFF data cannot be read ({type(exc).__name__}: {exc})") from exc
    axes = _axes_for_core(series.axes)
    source = "OME metadata" if flavour == "ome" else "ImageJ metadata" if flavour == "imagej" else "TIFF series"
    return ImageSource(path, "tiff", data, axes, source if axes else "guessed from the shape", info, notes, closer)


class TiffSink(OutputSink):
    """A TIFF output memory-mapped while the core fills it, or written at once (compressed inputs)."""

    def __init__(self, temporary: Path, source: ImageSource, shape, dtype, provenance: dict, axes: str | None = None):
        self.temporary = temporary
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.notes: list[str] = []
        if source.kind != "tiff":
            source = _as_tiff_source(source, axes or source.axes, self.shape)
        self.kwargs = self._write_options(source, provenance)
        self.compression = None
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        if source.info.get("compression", 1) != 1 and nbytes <= IN_MEMORY_BYTES:
            self.compression = "zlib"  # re-encoded with deflate (the codec every TIFF reader has)
            self.array = None
        else:
            self.array = self._memmap()

    def _write_options(self, source: ImageSource, provenance: dict) -> dict:
        info = source.info
        axes = info.get("series_axes")
        kwargs: dict = {"photometric": info.get("photometric")}
        if "S" in (axes or ""):  # samples per pixel (RGB): keep them interleaved or planar as they were
            kwargs["planarconfig"] = info.get("planarconfig")
        if info.get("resolution"):
            kwargs["resolution"] = info["resolution"]
            if info.get("resolutionunit") is not None:
                kwargs["resolutionunit"] = info["resolutionunit"]
        flavour = info.get("flavour", "plain")
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        imagej_axes = axes is not None and _imagej_order(axes)
        if flavour == "imagej" and self.dtype in IMAGEJ_DTYPES and imagej_axes:
            metadata = dict(info.get("imagej_metadata", {}))
            properties = dict(metadata.get("Properties") or {})
            properties[PROVENANCE_KEY] = to_json(provenance)
            metadata["Properties"] = properties
            metadata["axes"] = axes
            kwargs.update(imagej=True, metadata=metadata)
            return kwargs
        if flavour == "imagej" and not imagej_axes:
            self.notes.append(f"ImageJ cannot hold axes {axes}: written as a plain TIFF with the same axes")
        elif flavour == "imagej":
            self.notes.append(f"ImageJ cannot hold {self.dtype}: written as a plain TIFF with the same axes")
        if flavour == "ome":
            metadata = dict(info.get("ome_metadata", {}))
            metadata["axes"] = axes
            metadata["MapAnnotation"] = {"Namespace": OME_NAMESPACE, PROVENANCE_KEY: to_json(provenance)}
            kwargs.update(ome=True, metadata=metadata)
        else:
            metadata = dict(info.get("shaped_metadata", {}))
            if info.get("original_description"):
                metadata["original_description"] = info["original_description"]
            metadata["axes"] = axes
            metadata[PROVENANCE_KEY] = provenance
            kwargs.update(ome=False, imagej=False, metadata=metadata)
        if nbytes > BIGTIFF_BYTES:
            kwargs["bigtiff"] = True
        return kwargs

    def _memmap(self):
        import tifffile

        try:
            array = tifffile.memmap(self.temporary, shape=self.shape, dtype=self.dtype, **self.kwargs)
        except OSError:
            raise
        except Exception:
            if "metadata" not in self.kwargs or not self.kwargs.get("ome"):
                raise
            metadata = self.kwargs["metadata"]
            self.kwargs["metadata"] = {k: metadata[k] for k in ("axes", "MapAnnotation")}
            self.temporary.unlink(missing_ok=True)
            array = tifffile.memmap(self.temporary, shape=self.shape, dtype=self.dtype, **self.kwargs)
        try:
            reserve_space(self.temporary)  # a full disk fails here, not with SIGBUS while the map is filled
        except BaseException:
            _close_memmap(array)
            raise
        return array

    def finish(self, result) -> None:
        import tifffile

        if self.array is not None:
            self.array.flush()
            array, self.array = self.array, None
            _close_memmap(array)
            return
        with warnings.catch_warnings(), _tifffile_log(self.notes):
            warnings.simplefilter("ignore", DeprecationWarning)
            tifffile.imwrite(self.temporary, np.asarray(result), compression=self.compression, **self.kwargs)

    def abort(self) -> None:
        array, self.array = self.array, None
        if array is not None:
            _close_memmap(array)


def _imagej_order(axes: str) -> bool:
    """Whether ImageJ can store ``axes``: letters of TZCYXS only, in that order."""
    order = "TZCYXS"
    return all(letter in order for letter in axes) and list(axes) == sorted(axes, key=order.index)


def _close_memmap(array) -> None:
    mm = getattr(array, "_mmap", None)
    if mm is not None:
        mm.close()


def _as_tiff_source(source: ImageSource, axes: str | None, shape) -> ImageSource:
    """A stand-in TIFF description for a result written as TIFF from another format (PNG, NPY, zarr...)."""
    axes = axes or ("YX" if len(shape) == 2 else None)
    samples = axes is not None and axes.endswith("S") and shape[-1] in (2, 3, 4)
    series_axes = axes.replace("C", "S") if samples else axes
    info = {
        "flavour": "plain",
        "series_axes": series_axes,
        "photometric": 2 if samples and shape[-1] in (3, 4) else 1,
        "planarconfig": 1,
        "compression": 1,
        "resolution": None,
        "resolutionunit": None,
    }
    dpi = source.info.get("dpi")
    if dpi:
        info["resolution"], info["resolutionunit"] = (float(dpi[0]), float(dpi[1])), 2  # inches
    return ImageSource(source.path, "tiff", source.data, axes, source.axes_source, info)


@contextlib.contextmanager
def _tifffile_log(notes: list[str]):
    """Collect what tifffile logs (warnings about odd tags, metadata...) as notes instead of raw stderr lines."""
    logger = logging.getLogger("tifffile")

    class Collect(logging.Handler):
        def emit(self, record):
            text = re.sub(r"^<tifffile\.\w+ '[^']*'>\s*", "", record.getMessage().strip())
            note = f"the TIFF reader/writer (tifffile) reported: {text}"
            if text and note not in notes:
                notes.append(note)

    handler = Collect(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            if not issubclass(warning.category, DeprecationWarning):
                handler.emit(logging.makeLogRecord({"msg": str(warning.message), "levelno": logging.WARNING}))
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_provenance(path: Path) -> dict | None:
    """The provenance stored in a TIFF written by :class:`TiffSink` (for tests and users)."""
    import tifffile

    with _tifffile_log([]), tifffile.TiffFile(path) as tif:
        if tif.is_imagej:
            text = (tif.imagej_metadata or {}).get("Properties", {}).get(PROVENANCE_KEY)
            return json.loads(text) if text else None
        if tif.is_ome:
            ome = tifffile.xml2dict(tif.ome_metadata).get("OME", {})
            annotations = ome.get("StructuredAnnotations", {}).get("MapAnnotation", [])
            annotations = [annotations] if isinstance(annotations, dict) else annotations
            for annotation in annotations:
                if annotation.get("Namespace") == OME_NAMESPACE:
                    values = annotation["Value"]["M"]
                    values = [values] if isinstance(values, dict) else values
                    for item in values:
                        if item.get("K") == PROVENANCE_KEY:
                            return json.loads(item["value"])
            return None
        shaped = tif.shaped_metadata
        return shaped[0].get(PROVENANCE_KEY) if shaped else None
