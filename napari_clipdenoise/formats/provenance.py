"""What produced an output: model, parameters, software version, date.

The same dictionary is stored in the output file's own metadata where the
format has room for it (TIFF description/ImageJ properties/OME annotation, PNG
text chunk, zarr attributes) and in a JSON sidecar ``<output>.json`` otherwise.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from .. import __version__
from .atomic import write_text_atomic

#: Key under which provenance is stored (zarr attrs, PNG text chunk, ImageJ property).
PROVENANCE_KEY = "clipdenoise_provenance"
#: OME MapAnnotation namespace holding the provenance JSON.
OME_NAMESPACE = "napari-clipdenoise/provenance"


def build_provenance(
    model_info: dict, parameters: dict, *, source: str, input_shape, input_dtype, axes: str, signature=None
) -> dict:
    """A JSON-serialisable record of how one output was made.

    Parameters
    ----------
    model_info : dict
        At least ``name`` and ``sha256`` (see ``DenoisingModel.provenance``).
    parameters : dict
        The resolved denoising options (tile size, overlap, device, precision...).
    source : str
        The input file.
    input_shape, input_dtype, axes
        What was read and how its axes were understood.
    signature : dict, optional
        What identifies the input's content (resolved path, size, modification
        time), so a rerun can tell whether this output still belongs to it.
    """
    record = {
        "software": "napari-clipdenoise",
        "version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": "Transfer CLIP for Generalizable Image Denoising (Cheng et al., CVPR 2024)",
        "model": dict(model_info),
        "parameters": dict(parameters),
        "input": {
            "path": os.fspath(source),
            "shape": [int(s) for s in input_shape],
            "dtype": str(input_dtype),
            "axes": axes,
        },
    }
    if signature is not None:
        record["input"]["signature"] = dict(signature)
    return record


def to_json(provenance: dict) -> str:
    return json.dumps(provenance, sort_keys=True, default=str)


def sidecar_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".json")


def write_sidecar(output: str | os.PathLike, provenance: dict) -> Path:
    """Write ``<output>.json`` atomically (replacing an older one) and return its path."""
    return write_text_atomic(sidecar_path(output), json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
