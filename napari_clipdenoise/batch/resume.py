"""Resuming a batch: whether an existing output is kept, redone or refused.

A finished output is kept (the file is skipped) only when its provenance says
it was made from this input (resolved path, size and modification time; for a
folder, those of every file in it), with this model file (sha256) and these
settings, and it is whole (not truncated). An incomplete earlier output is
redone. An output made from anything else is refused with the reason unless
``--overwrite`` asks to redo it. A path this software did not write is never
replaced (the command line refuses such a batch before any work).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..formats import read_provenance
from ..formats.safety import input_signature, is_clipdenoise_output, output_problem

#: Options that change where and how fast a result is computed, not its pixels.
PLACEMENT_OPTIONS = ("device", "batch_size", "channels_last")

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Decision:
    """``action``: ``run`` (no output yet), ``skip`` (finished earlier), ``redo`` or ``refuse``; and why."""

    action: str
    reason: str | None = None


def settings_identity(settings) -> dict:
    """The settings of a batch that decide an output's pixels (placement options left out)."""
    record = {k: v for k, v in settings.options.as_record().items() if k not in PLACEMENT_OPTIONS}
    record["axes"] = settings.axes
    return record


def input_identity(path: Path) -> dict:
    """The input's resolved path with its size and modification time (every file's, for a folder)."""
    return {"path": str(Path(path).resolve()), **input_signature(path)}


def file_sha256(path) -> str:
    """sha256 of a file (cached by path, size and modification time; no torch import)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def model_file_sha256(spec: str) -> str | None:
    """sha256 of the checkpoint file a model string names (registry name or path), None when there is none."""
    from ..model.sources import parse_model_source

    source = parse_model_source(spec)
    if source.path is None or not source.path.is_file():
        return None
    return file_sha256(source.path)


def decide(output: Path, input_path: Path, settings, model_sha256: str | None) -> Decision:
    """What to do about ``output`` (see the module docstring)."""
    if not os.path.lexists(output):
        return Decision("run")
    if not is_clipdenoise_output(output):
        return Decision(
            "refuse",
            f"{output} exists and was not written by napari-clipdenoise; it is never replaced: move it away"
            " or choose another -o/--suffix",
        )
    problem = output_problem(output)
    if problem:
        return Decision("redo", f"the earlier output was incomplete ({problem}); it is redone")
    if settings.overwrite:
        return Decision("redo", "the earlier output is replaced (--overwrite)")
    try:
        provenance = read_provenance(output) or {}
    except Exception:  # noqa: BLE001 - ours by its sidecar, yet unreadable: treat as unverifiable
        provenance = {}
    changes = _changes(provenance, input_path, settings, model_sha256)
    if not changes:
        return Decision("skip", "finished earlier from this input with this model and settings")
    return Decision(
        "refuse",
        f"the existing output was not made from this input with this model and settings ({'; '.join(changes)});"
        " pass --overwrite to redo it",
    )


def _changes(provenance: dict, input_path: Path, settings, model_sha256: str | None) -> list[str]:
    changes = []
    earlier_input = (provenance.get("input") or {}).get("signature")
    now = input_identity(input_path)
    if not isinstance(earlier_input, dict):
        changes.append("its provenance does not record the input's size and time (an older version wrote it)")
    elif earlier_input.get("path") != now["path"]:
        changes.append(f"it was made from {earlier_input.get('path')}")
    elif earlier_input != now:
        changes.append("the input changed since: its size or modification time differs")
    earlier_model = (provenance.get("model") or {}).get("file_sha256")
    if earlier_model is None or model_sha256 is None:
        changes.append("the model file it was made with cannot be compared")
    elif earlier_model != model_sha256:
        changes.append(f"it was made with another model file (sha256 {earlier_model[:12]}...)")
    earlier_settings = (provenance.get("parameters") or {}).get("settings")
    now_settings = settings_identity(settings)
    if not isinstance(earlier_settings, dict):
        changes.append("its provenance does not record the settings")
    elif earlier_settings != now_settings:
        keys = sorted(
            k for k in set(earlier_settings) | set(now_settings) if earlier_settings.get(k) != now_settings.get(k)
        )
        changes.append(f"settings differ: {', '.join(keys)}")
    return changes


__all__ = ["Decision", "decide", "input_identity", "model_file_sha256", "settings_identity"]
