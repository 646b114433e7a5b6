"""Writing a network as TorchScript or ONNX, checked against torch: the formats other tools run.

Used by :func:`~napari_clipdenoise.model.export.export_model` and the BioImage
Model Zoo packager (:mod:`.bioimageio`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

#: Largest |onnxruntime - torch| accepted on the network's [0, 1] scale (measured ~1e-6 in fp32 on the CPU).
ONNX_TOLERANCE = 1e-4
ONNX_OPSET = 17
EXTRA_HINT = "pip install 'napari-clipdenoise[export]' torch==2.13.0"


class ExportError(ValueError):
    """An export could not be made; the message says why. Nothing was written."""


@dataclass
class Exported:
    """What :func:`export_model` wrote, with notes for the person who asked (checks made, figures)."""

    path: Path
    format: str
    notes: list[str] = field(default_factory=list)


def require(module: str, purpose: str):
    """Import an optional dependency of the ``export`` extra, or raise ExportError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{purpose} needs the optional 'export' extra ({module} is missing): {EXTRA_HINT}") from None


def example_input(in_channels: int, height: int = 64, width: int = 64, *, seed: int = 0):
    import torch

    return torch.rand(1, in_channels, height, width, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def _quiet_export():
    """torch.jit/onnx export speak in deprecation and tracer warnings that say nothing to a user here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def trace_torchscript(network, example):
    """The network's reference path as a traced TorchScript module (checked at a second size)."""
    import torch

    network = network.eval()
    with torch.no_grad(), _quiet_export():
        traced = torch.jit.trace(network, example, check_trace=False)
        other = example_input(example.shape[1], example.shape[2] + 16, example.shape[3] + 32, seed=1)
        difference = float((traced(other) - network(other)).abs().max())
    if difference > ONNX_TOLERANCE:
        raise ExportError(f"the traced TorchScript module differs from the network by {difference:.2e} at another size")
    return traced


def write_torchscript(network, path: Path, example=None) -> list[str]:
    import torch

    example = example if example is not None else example_input(network.in_channels)
    traced = trace_torchscript(network, example)
    with _quiet_export():
        torch.jit.save(traced, str(path))
    return [f"TorchScript (traced reference path) checked against torch at a second size: {path.name}"]


def write_onnx(network, path: Path, example=None) -> list[str]:
    """Write ONNX with dynamic batch/height/width and check it against torch with onnxruntime at two sizes."""
    import torch

    require("onnx", "ONNX export")
    ort = require("onnxruntime", "checking the ONNX export")
    network = network.eval()
    example = example if example is not None else example_input(network.in_channels)
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), _quiet_export():
        try:
            torch.onnx.export(
                network,
                (example,),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": axes, "output": axes},
                opset_version=ONNX_OPSET,
            )
        except TypeError:  # a torch without the TorchScript-based exporter
            from torch.export import Dim

            height, width = Dim("height16", min=1, max=4096), Dim("width16", min=1, max=4096)
            program = torch.onnx.export(
                network,
                (example,),
                dynamo=True,
                dynamic_shapes=({0: Dim("batch", min=1, max=1024), 2: 16 * height, 3: 16 * width},),
            )
            program.save(str(path), external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    for probe in (example, example_input(network.in_channels, 48, 80, seed=2).repeat(2, 1, 1, 1)):
        got = session.run(None, {name: probe.numpy()})[0]
        with torch.no_grad():
            want = network(probe).numpy()
        if got.shape != want.shape:
            raise ExportError(f"the ONNX model returned shape {got.shape} for input {tuple(probe.shape)}")
        worst = max(worst, float(abs(got - want).max()))
    if worst > ONNX_TOLERANCE:
        raise ExportError(f"the ONNX model differs from torch by {worst:.2e} (> {ONNX_TOLERANCE:g}); not kept")
    return [
        f"ONNX (opset {ONNX_OPSET}, dynamic batch/height/width) checked with onnxruntime against torch at"
        f" 64x64 and 2x48x80: max |difference| {worst:.1e} on the [0, 1] scale (tolerance {ONNX_TOLERANCE:g})"
    ]
