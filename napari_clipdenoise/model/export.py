"""Exporting a model for other tools: TorchScript, ONNX and BioImage Model Zoo packages.

The exported network is the reference path of
:class:`~napari_clipdenoise.model.network.CLIPDenoiser`: ``forward(x)`` without a
tile geometry, whose decoder upsamples with ``F.interpolate(align_corners=True)``
(what the authors' code and a whole-image pass do). It maps ``N x C x H x W``
float32 on the network's [0, 1] scale to the same shape, H and W multiples of 16.

ONNX files have dynamic batch, height and width and are checked against torch
with onnxruntime before they are kept (:data:`ONNX_TOLERANCE`). ONNX and
bioimageio need the optional ``export`` extra; TorchScript needs only torch.
Outputs are written to a temporary file next to the target and renamed, never
over an existing file unless asked, and never over the model's own file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .onnx_torchscript import (  # noqa: F401 (the writers and their limits stay importable from here)
    EXTRA_HINT,
    ONNX_OPSET,
    ONNX_TOLERANCE,
    Exported,
    ExportError,
    example_input,
    require,
    trace_torchscript,
    write_onnx,
    write_torchscript,
)

FORMATS = ("bioimageio", "onnx", "torchscript")


def _check_output(output: Path, model, overwrite: bool) -> Path:
    output = Path(output).expanduser()
    resolved = output.resolve()
    if model.path is not None and resolved == Path(model.path).resolve():
        raise ExportError(f"{output} is the model's own file; choose another output path")
    if output.is_dir():
        raise ExportError(f"{output} is a folder; give the file to write (e.g. {output / 'model.zip'})")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite (overwrite=True) to replace it")
    if not output.parent.is_dir():
        raise ExportError(f"the folder {output.parent} does not exist")
    return output


def export_model(
    source,
    format: str,
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    test: bool = False,
    license: str | None = None,
    halo: int | None = None,
) -> Exported:
    """Export a model (a name, a checkpoint path or a loaded model) as ``bioimageio``, ``onnx`` or ``torchscript``.

    Parameters
    ----------
    source : str, path-like or DenoisingModel
        What ``load_model`` accepts.
    format : {"bioimageio", "onnx", "torchscript"}
        ``bioimageio`` writes a BioImage Model Zoo package (a ``.zip``).
    output : path-like
        The file to write; it must not exist unless ``overwrite``.
    test : bool
        bioimageio only: run ``bioimageio.core``'s model test on the package.
    license : str, optional
        SPDX identifier of the weights' licence, when you know it (bioimageio only).
    halo : int, optional
        bioimageio only: the halo in px (default 128, the seam bound of docs/tiling.md).

    Returns
    -------
    Exported
        The path written and notes on the checks made.
    """
    from .registry import load_model

    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    model = load_model(source)  # CheckpointError / ModelNotInstalledError say what is wrong
    output = _check_output(output, model, overwrite)
    from .checkpoints import _create_file, follow_umask

    tmp = _create_file(output.parent, f".{output.name}.", f".tmp{output.suffix}")
    try:
        if format == "torchscript":
            notes = write_torchscript(model.network, tmp)
        elif format == "onnx":
            notes = write_onnx(model.network, tmp)
        else:
            from .bioimageio import write_bioimageio_package

            extra = {} if halo is None else {"halo": halo}
            notes = write_bioimageio_package(model, tmp, test=test, license=license, **extra)
        follow_umask(tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(output, format, notes)
