"""BioImage Model Zoo packages of this network: writing them and reading them back.

A package (format 0.5 of the bioimage.io model spec) holds the description
``rdf.yaml``, the weights as TorchScript, ONNX and a PyTorch state dict with the
architecture's source file (``network.py``, self-contained), test input and output
tensors, pre- and post-processing that follow the model's intensity convention
(``input_scale``: e.g. 0..255 -> [0, 1] for photographs, HU window
[-1024, 3072] -> [0, 1] for CT), the size rule (multiples of 16), a halo,
a README, a cover image, the paper's citation and the licence of the weights as
far as it is known. Writing needs the ``export`` extra; reading a package back
(``models import package.zip``) needs only PyYAML and torch, and loads the state
dict through the same defensive reader as any other checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from .. import __version__
from ..errors import CheckpointError
from .catalog import PHOTO_SCALE, REFERENCE_REPOSITORY, REGISTRY, InputScale
from .checkpoints import BIOIMAGEIO_DESCRIPTIONS, MAX_ARCHIVE_BYTES, MAX_EXPANSION, LoadedCheckpoint
from .network import SIZE_MULTIPLE
from .onnx_torchscript import ExportError, example_input, require, write_onnx, write_torchscript

#: Halo of the output tiles other tools should crop: the seam bound of docs/tiling.md (a pixel >= ~128 px
#: from a cut tile edge is within ~4e-3 of a whole-image pass on the [0, 1] scale).
HALO = 128
PAPER = "Jun Cheng, Dong Liang, Shan Tan. Transfer CLIP for Generalizable Image Denoising. CVPR 2024."
PAPER_URL = "https://arxiv.org/abs/2403.15132"
PAPER_AUTHORS = ("Jun Cheng", "Dong Liang", "Shan Tan")
CONFIG_KEY = "napari_clipdenoise"


def min_size(halo: int) -> int:
    """Smallest input a package allows: a halo on both sides plus one 16 px step (bioimage.io requires more than 2 halos)."""
    return 2 * halo + SIZE_MULTIPLE


def test_size(halo: int) -> int:
    """Side of the test tensors: at least 64 px and a size the package allows (min + k * 16)."""
    return max(64, min_size(halo))


WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")


def model_input_scale(model) -> tuple[InputScale, bool]:
    """The intensity convention of ``model`` and whether it is known (metadata, then registry entry)."""
    record = model.metadata.get("input_scale")
    if isinstance(record, dict) and {"unit", "low", "high"} <= set(record):
        try:
            scale = InputScale(
                str(record["unit"]), float(record["low"]), float(record["high"]), record.get("description", "")
            )
        except (TypeError, ValueError):
            scale = None
        if scale is not None and scale.high > scale.low:
            return scale, True
    for name in (model.metadata.get("name"), model.name):
        if name in REGISTRY:
            return REGISTRY[name].input_scale, True
    return PHOTO_SCALE, False


def _licence(model, license: str | None) -> tuple[str | None, str]:
    """(SPDX id or None, a sentence for the README saying what is known)."""
    if license:
        return license, f"{license}, as stated by whoever exported this package."
    if model.metadata.get("random_weights"):
        return "BSD-3-Clause", (
            "BSD-3-Clause (napari-clipdenoise's licence). These are seeded RANDOM weights made by napari-clipdenoise's"
            " test helpers: the package shows the pipeline and the architecture; it does not denoise."
        )
    if model.metadata.get("format") == "reference" or model.name in REGISTRY or model.metadata.get("name") in REGISTRY:
        return None, (
            "unknown. These weights come from the authors' released checkpoints (linked from"
            f" {REFERENCE_REPOSITORY}); the authors' code is MIT-licensed, but no licence is stated for the"
            " released weights. Ask the authors before redistributing them."
        )
    return None, "unknown (not recorded in the model's metadata); ask whoever trained the weights."


def _postprocessing_clips(scale: InputScale) -> bool:
    """Photographs are bounded (the authors clamp to [0, 1]); CT in HU is not clipped (their CT code does not)."""
    return scale.unit != "HU"


def processing(scale: InputScale) -> tuple[list[dict], list[dict]]:
    """bioimage.io pre- and post-processing for an intensity convention: ``low..high`` <-> the network's [0, 1]."""
    span = scale.high - scale.low
    pre = [
        {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
        {"id": "scale_linear", "kwargs": {"gain": 1.0 / span, "offset": -scale.low / span}},
    ]
    post = [{"id": "scale_linear", "kwargs": {"gain": span, "offset": scale.low}}]
    if _postprocessing_clips(scale):
        post.append({"id": "clip", "kwargs": {"min": scale.low, "max": scale.high}})
    return pre, post


def _test_tensors(model, scale: InputScale, size: int):
    """A real image (scikit-image) with Gaussian noise, in the model's input units, and the network's output."""
    import numpy as np
    import torch
    from skimage import data

    rng = np.random.default_rng(0)
    if model.in_channels == 3:
        clean = data.astronaut()[:size, 120 : 120 + size].transpose(2, 0, 1) / 255.0
    else:
        clean = data.camera()[40 : 40 + size, 120 : 120 + size][None] / 255.0
    noisy = np.clip(clean + rng.normal(0.0, 15 / 255, clean.shape), 0.0, 1.0).astype(np.float32)
    with torch.no_grad():
        output = model.network.eval()(torch.from_numpy(noisy)[None]).numpy()[0]
    span = scale.high - scale.low
    raw_input = (noisy * span + scale.low).astype(np.float32)[None]
    raw_output = output * span + scale.low
    if _postprocessing_clips(scale):
        raw_output = np.clip(raw_output, scale.low, scale.high)
    return raw_input, raw_output.astype(np.float32)[None]


def _cover(raw_input, raw_output, scale: InputScale, path: Path) -> None:
    """Noisy input | output, side by side (2:1), on the model's intensity window."""
    import imageio.v3 as iio
    import numpy as np

    def show(tensor):
        image = np.clip((tensor[0] - scale.low) / (scale.high - scale.low), 0, 1)
        image = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
        return (image * 255).round().astype(np.uint8)

    iio.imwrite(path, np.concatenate([show(raw_input), show(raw_output)], axis=1))


def _readme(model, scale: InputScale, known_scale: bool, licence_text: str, notes: list[str], halo: int) -> str:
    meta = model.metadata
    random_weights = bool(meta.get("random_weights"))
    span = scale.high - scale.low
    lines = [
        f"# {model.name}: CLIP-based generalizable denoiser (napari-clipdenoise export)",
        "",
        "A frozen CLIP RN50 image encoder (stem..layer3) and a learned decoder, after"
        f" {PAPER} ({PAPER_URL}; reference code {REFERENCE_REPOSITORY}).",
        "",
    ]
    if random_weights:
        lines += ["**RANDOM WEIGHTS: this package does not denoise.** It exercises the architecture and tools.", ""]
    lines += [
        "## Weights",
        f"- trained on: {meta.get('noise', 'not recorded')}",
        f"- description: {meta.get('description', 'not recorded')}",
        f"- weights sha256 (of the state dict): {meta.get('weights_sha256', 'not recorded')}",
        f"- source file sha256: {meta.get('source_sha256', 'not recorded')}",
        f"- licence of the weights: {licence_text}",
        "- the encoder's weights derive from OpenAI CLIP RN50 (MIT licence), unless trained otherwise.",
        "",
        "## Input and output",
        "- axes: batch, channel, y, x; float32; height and width multiples of 16 (the network's rule);"
        f" the package asks for at least {min_size(halo)} px (two halos plus 16) and steps of 16.",
        f"- intensity convention: {scale.description or scale.unit}"
        + ("" if known_scale else " (ASSUMED: the model's metadata does not record its convention)"),
        f"- preprocessing: scale_linear, x -> (x - {scale.low:g}) / {span:g}, the network's [0, 1] scale.",
        f"- postprocessing: scale_linear, y -> y * {span:g} + {scale.low:g}"
        + (f", then clip to [{scale.low:g}, {scale.high:g}]." if _postprocessing_clips(scale) else " (no clip)."),
        "- the network is not shift-equivariant (its decoder upsamples with align_corners=True), and it sees"
        f" context far beyond its tiles: tiled runs should crop a halo of {halo} px"
        + (
            " (seams below ~4e-3 on the [0, 1] scale with napari-clipdenoise's grid-aligned tiles; a plain tiler"
            " differs more)."
            if halo >= HALO
            else f" (SMALLER than the {HALO} px that keeps seams below ~4e-3: made for a quick test)."
        )
        + " Whole images agree with the reference code.",
        "",
        "## Validation",
        f"- the test tensors are a {test_size(halo)} x {test_size(halo)} crop of a scikit-image photograph with Gaussian noise"
        " (sigma 15/255)"
        " and this network's output for it (fp32, CPU, the reference path).",
        *[f"- {note}" for note in notes],
        "- no denoising quality is claimed by this package; see the paper for the authors' figures.",
        "",
        "## Citation",
        "```",
        "@inproceedings{Jun2024Transfer,",
        "  title={Transfer CLIP for Generalizable Image Denoising},",
        "  author={Jun Cheng and Dong Liang and Shan Tan},",
        "  booktitle={CVPR},",
        "  year={2024}",
        "}",
        "```",
        "",
        f"Exported by napari-clipdenoise {__version__}. Import it back with:"
        f" `clipdenoise models import PACKAGE.zip --name {model.name}`.",
        "",
    ]
    return "\n".join(lines)


def _package_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", name)
    return f"CLIP denoiser {cleaned} (napari-clipdenoise)"[:128]


def write_bioimageio_package(
    model, output: Path, *, test: bool = False, license: str | None = None, halo: int = HALO
) -> list[str]:
    """Write ``model`` as a BioImage Model Zoo package (zip) at ``output``; returns notes on the checks made.

    ``halo`` (px, a multiple of 8) is what tiled runs should crop; the default is the
    honest one (docs/tiling.md). It also sets the smallest input (``2 * halo + 16``)
    and the test tensors' size, so a smaller halo makes a package that tests faster.
    """
    if halo < 1 or halo % 8:
        raise ExportError(f"halo must be a positive multiple of 8 px, got {halo}")
    import numpy as np
    import torch

    spec = require("bioimageio.spec", "BioImage Model Zoo export")
    require("onnx", "BioImage Model Zoo export (its ONNX weights)")
    from . import network as network_module

    scale, known_scale = model_input_scale(model)
    licence_id, licence_text = _licence(model, license)
    channels = model.in_channels
    span = scale.high - scale.low
    notes = []
    with tempfile.TemporaryDirectory(prefix="clipdenoise-bioimageio-") as scratch:
        folder = Path(scratch)
        raw_input, raw_output = _test_tensors(model, scale, test_size(halo))
        np.save(folder / "test_input.npy", raw_input)
        np.save(folder / "test_output.npy", raw_output)
        _cover(raw_input, raw_output, scale, folder / "cover.png")
        example = example_input(channels)
        torch.save({k: v.detach().cpu() for k, v in model.network.state_dict().items()}, folder / "state_dict.pt")
        shutil.copyfile(network_module.__file__, folder / "network.py")
        notes += write_torchscript(model.network, folder / "torchscript.pt", example)
        notes += write_onnx(model.network, folder / "model.onnx", example)
        (folder / "README.md").write_text(_readme(model, scale, known_scale, licence_text, notes, halo))
        channel_names = ["r", "g", "b"] if channels == 3 else ["intensity"]
        space = [
            {"type": "space", "id": axis, "size": {"min": min_size(halo), "step": SIZE_MULTIPLE}} for axis in ("y", "x")
        ]
        pre, post = processing(scale)
        torch_version = torch.__version__.split("+")[0]
        config = {key: model.network.config.to_dict()[key] for key in ("in_channels", "out_channels", "bias")}
        config["negative_slope"] = model.network.config.negative_slope
        ours = {
            "family": "clip",
            "network_config": model.network.config.to_dict(),
            "input_scale": scale.as_record(),
            "input_scale_known": known_scale,
            "metadata": json.loads(json.dumps(model.metadata, default=str)),
            "exported_by": f"napari-clipdenoise {__version__}",
        }
        rdf = {
            "format_version": spec.ModelDescr.implemented_format_version,
            "type": "model",
            "name": _package_name(model.name),
            "description": (
                "Generalizable image denoiser: a frozen CLIP RN50 encoder and a learned decoder (Cheng et al., CVPR"
                f" 2024). {'RANDOM WEIGHTS, not a denoiser. ' if model.metadata.get('random_weights') else ''}"
                f"Trained on: {str(model.metadata.get('noise', 'not recorded'))[:200]}"
            ),
            "authors": [{"name": name} for name in PAPER_AUTHORS],
            "packaged_by": [{"name": "napari-clipdenoise export"}],
            "cite": [{"text": PAPER, "url": PAPER_URL}],
            "license": licence_id,
            "git_repo": REFERENCE_REPOSITORY,
            "documentation": {"source": "README.md"},
            "covers": [{"source": "cover.png"}],
            "tags": ["denoising", "2d", "clip", "pytorch", "onnx", "napari-clipdenoise"],
            "inputs": [
                {
                    "id": "input",
                    "description": f"noisy image in {scale.unit} units ({scale.low:g}..{scale.high:g})",
                    "axes": [{"type": "batch"}, {"type": "channel", "channel_names": channel_names}, *space],
                    "test_tensor": {"source": "test_input.npy"},
                    "data": {"type": "float32"},
                    "preprocessing": pre,
                }
            ],
            "outputs": [
                {
                    "id": "output",
                    "description": f"denoised image in {scale.unit} units",
                    "axes": [
                        {"type": "batch"},
                        {"type": "channel", "channel_names": channel_names},
                        *[
                            {"type": "space", "id": axis, "size": {"tensor_id": "input", "axis_id": axis}, "halo": halo}
                            for axis in ("y", "x")
                        ],
                    ],
                    "test_tensor": {"source": "test_output.npy"},
                    "data": {"type": "float32"},
                    "postprocessing": post,
                }
            ],
            "weights": {
                "pytorch_state_dict": {
                    "source": "state_dict.pt",
                    "architecture": {"source": "network.py", "callable": "CLIPDenoiser", "kwargs": config},
                    "pytorch_version": torch_version,
                },
                "torchscript": {
                    "source": "torchscript.pt",
                    "pytorch_version": torch_version,
                    "parent": "pytorch_state_dict",
                },
                "onnx": {"source": "model.onnx", "opset_version": 17, "parent": "pytorch_state_dict"},
            },
            "config": {
                "bioimageio": {
                    "reproducibility_tolerance": [
                        {
                            "absolute_tolerance": 1e-4 * span,
                            "relative_tolerance": 1e-3,
                            "mismatched_elements_per_million": 100,
                        }
                    ],
                    "architecture_type": "CLIP RN50 + decoder",
                    "task": "denoising",
                },
                CONFIG_KEY: ours,
            },
        }
        if licence_id is None:
            rdf.pop("license")
        context = spec.ValidationContext(root=folder, file_name="rdf.yaml")
        description = spec.build_description(rdf, context=context)
        if not isinstance(description, spec.ModelDescr):
            summary = description.validation_summary
            raise ExportError(f"the package description does not validate: {summary.format()}")
        spec.save_bioimageio_package(description, output_path=output, compression=zipfile.ZIP_STORED)
    notes.append(f"bioimage.io description validated by bioimageio.spec {spec.__version__} (format 0.5)")
    if test:
        notes.append(test_package(output))
    return notes


def test_package(path: str | os.PathLike) -> str:
    """Run ``bioimageio.core``'s model test on a package; ExportError unless it passes."""
    core = require("bioimageio.core", "the BioImage Model Zoo model test")
    summary = core.test_model(str(path))
    if summary.status != "passed":
        failed = [d for d in summary.details if d.status != "passed"]
        reasons = "; ".join(f"{d.name}: {[e.msg for e in d.errors][:2]}" for d in failed[:5])
        raise ExportError(f"bioimageio.core's model test did not pass on {path}: {reasons}")
    return f"bioimageio.core {core.__version__} model test: passed ({len(summary.details)} checks)"


# --------------------------------------------------------------------------------- reading back
def _read_yaml(text: str, source: str) -> dict:
    try:
        import yaml
    except ImportError:
        raise CheckpointError(
            f"{source} is a BioImage Model Zoo package; reading it needs PyYAML (the 'export' extra)"
        ) from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{source}: its description is not valid YAML ({exc})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{source}: its description is not a YAML mapping")
    return content


class _Package:
    """A package as a zip file or a folder, read member by member with size checks."""

    def __init__(self, path: Path):
        self.path = path
        self.archive = None if path.is_dir() else zipfile.ZipFile(path)

    def names(self) -> list[str]:
        if self.archive is None:
            return [p.name for p in self.path.iterdir()]
        return self.archive.namelist()

    def read(self, name: str, limit: int) -> bytes:
        if "/" in name or "\\" in name or name.startswith("."):
            raise CheckpointError(f"{self.path}: refers to {name!r}, which is not a file of the package")
        if self.archive is None:
            file = self.path / name
            if not file.is_file() or file.stat().st_size > limit:
                raise CheckpointError(f"{self.path}: {name} is missing or larger than {limit >> 20} MiB")
            return file.read_bytes()
        try:
            member = self.archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: the package has no file {name!r}") from None
        if member.file_size > limit or member.file_size > MAX_EXPANSION * max(member.compress_size, 1):
            raise CheckpointError(f"{self.path}: {name} would expand to {member.file_size} bytes; refusing it")
        return self.archive.read(member)

    def close(self):
        if self.archive is not None:
            self.archive.close()


def load_bioimageio_package(path: str | os.PathLike) -> LoadedCheckpoint:
    """Load a BioImage Model Zoo package of this network family (e.g. our own export) from its state dict."""
    import hashlib

    from .checkpoints import _reference_params, _torch_load, config_from_state_dict, network_from_state_dict

    path = Path(path)
    package = _Package(path)
    try:
        names = package.names()
        description = next((n for n in BIOIMAGEIO_DESCRIPTIONS if n in names), None)
        if description is None:
            raise CheckpointError(f"{path} has no rdf.yaml or bioimageio.yaml: not a BioImage Model Zoo package")
        rdf = _read_yaml(package.read(description, 4 << 20).decode("utf-8", "replace"), str(path))
        weights = rdf.get("weights") or {}
        state_entry = weights.get("pytorch_state_dict") if isinstance(weights, dict) else None
        architecture = (state_entry or {}).get("architecture") or {}
        ours = ((rdf.get("config") or {}).get(CONFIG_KEY)) or {}
        if architecture.get("callable") != "CLIPDenoiser" and not ours:
            raise CheckpointError(
                f"{path} is a BioImage Model Zoo package of another network"
                f" ({architecture.get('callable') or rdf.get('name', 'unknown')}); only CLIPDenoiser packages load here"
            )
        if not state_entry or not isinstance(state_entry.get("source"), str):
            raise CheckpointError(
                f"{path} holds no pytorch_state_dict weights; only those are read (TorchScript would run code)"
            )
        data = package.read(state_entry["source"], MAX_ARCHIVE_BYTES)
    finally:
        package.close()
    digest = hashlib.sha256(data).hexdigest()
    if state_entry.get("sha256") and state_entry["sha256"].lower() != digest:
        raise CheckpointError(
            f"{path}: the state dict's sha256 is {digest}, not the {state_entry['sha256']} it declares"
        )
    with tempfile.TemporaryDirectory(prefix="clipdenoise-import-") as scratch:
        weights_file = Path(scratch) / "state_dict.pt"
        weights_file.write_bytes(data)
        state = _reference_params(_torch_load(weights_file), weights_file)
    config = config_from_state_dict(state, str(path))
    network = network_from_state_dict(state, config, str(path))
    kept = ours.get("metadata") if isinstance(ours.get("metadata"), dict) else {}
    metadata = {k: v for k, v in kept.items() if k not in ("format", "config", "weights_sha256", "installed_from")}
    if isinstance(ours.get("input_scale"), dict) and ours.get("input_scale_known"):
        metadata["input_scale"] = ours["input_scale"]
    metadata.update(
        {
            "format": "bioimageio",
            "source_file": path.name,
            "bioimageio_name": rdf.get("name"),
            "config": network.config.to_dict(),
            "in_channels": network.in_channels,
            "out_channels": network.out_channels,
        }
    )
    metadata.setdefault("source_sha256", digest)
    return LoadedCheckpoint(network, "bioimageio", metadata)
