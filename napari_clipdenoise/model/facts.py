"""What a model string says about its model before the weights are loaded: channels and input scale.

The widgets show a model's expected intensity scale and the range a run will use
while a model is merely selected; loading it would import torch. Project-format
files carry both facts in their safetensors header, which is read here as plain
JSON (8 bytes of length, then the header), so nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .registry import REGISTRY, DenoisingModel, InputScale, scale_for
from .sources import parse_model_source

#: Headers larger than this are not read (a project header is a few kB).
MAX_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ModelFacts:
    """A model's channels and input scale; ``plan_denoise`` accepts it in place of a loaded model."""

    name: str
    in_channels: int
    input_scale: InputScale | None
    family: str = "clip"  # "clip" or "idf": how its planes are run


def header_metadata(path: str | os.PathLike) -> dict | None:
    """The project metadata of a ``.safetensors`` checkpoint, read without torch; None if there is none."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if not 0 < length <= MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length))
        text = header.get("__metadata__", {}).get("metadata")
        return json.loads(text) if isinstance(text, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def model_facts(source) -> ModelFacts | None:
    """Channels and input scale of ``source`` (a loaded model, a name or a path), or None when unknown."""
    if isinstance(source, DenoisingModel):
        return ModelFacts(source.name, source.in_channels, source.input_scale, source.family)
    parsed = parse_model_source(source)
    metadata: dict = {}
    if parsed.path is not None and parsed.exists:
        metadata = header_metadata(parsed.path) or {}
    name = metadata.get("name") or parsed.name
    channels = metadata.get("in_channels")
    entry = REGISTRY.get(name) if name else None
    if channels is None and entry is not None:
        channels = entry.in_channels
    if channels is None:
        return None
    family = metadata.get("family") or (entry.family if entry is not None else "clip")
    return ModelFacts(str(name or Path(parsed.text).stem), int(channels), scale_for(metadata, name), family)
