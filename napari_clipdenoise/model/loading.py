"""Loading any checkpoint this project reads, recognised by its structure; the one place formats are told apart.

:mod:`.checkpoints` holds the readers of the project format and the authors'
reference ``.pth``; :mod:`.idf` the IDF weight files; :mod:`.bioimageio` the
BioImage Model Zoo packages. :func:`load_checkpoint` decides which applies.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import CheckpointError
from .checkpoints import (
    MAX_PICKLE_BYTES,
    PROJECT_FORMAT,
    LoadedCheckpoint,
    _read_safetensors,
    file_sha256,
    idf_expected,
    load_project_checkpoint,
    load_reference_checkpoint,
    safetensors_layout,
    sniff_format,
)


def _idf_weights_file(path: Path) -> LoadedCheckpoint | None:
    """A plain safetensors file of exactly IDF's six block tensors (as the bundled one), else None."""
    from .idf import STATE_SHAPES, network_from_state

    entries, header = safetensors_layout(path)
    if set(entries) != set(STATE_SHAPES) or header.get("format") == PROJECT_FORMAT:
        return None
    state, _ = _read_safetensors(path, idf_expected())
    metadata = {
        "format": "idf-weights",
        "family": "idf",
        "source_file": header.get("source_file", path.name),
        "source_sha256": header.get("source_sha256") or file_sha256(path),
        "in_channels": 3,
        "out_channels": 3,
    }
    return LoadedCheckpoint(network_from_state(state, str(path)), "idf-weights", metadata)


def _idf_lightning_file(path: Path) -> LoadedCheckpoint | None:
    """The authors' IDF Lightning ``.ckpt`` (recognised by its pickle naming IDF's block tensors), else None.

    It is read by a restricted unpickler that runs no code from the file
    (:func:`~napari_clipdenoise.model.idf.read_idf_lightning_checkpoint`).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles or archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
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
    """Load any checkpoint this project reads, recognised by its structure.

    A project-format ``.safetensors``, a reference ``.pth``, IDF weights (bundled, or the
    authors' Lightning ``.ckpt``) or a BioImage Model Zoo package of this network.
    """
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
    if kind == "bioimageio":
        from .bioimageio import load_bioimageio_package

        return load_bioimageio_package(path)
    return load_reference_checkpoint(path)
