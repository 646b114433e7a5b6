"""What a model source is, in a line a person can read: for model pickers, without loading weights.

:func:`describe_model` answers "what is this model, what was it trained on, can
it be used now, and if not what to do" for a registry name, an installed or
bundled model, or a checkpoint file. It reads at most a project file's JSON
header (through ``safetensors`` with the numpy backend), so it never imports
torch and is quick enough to call when a selection changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .sources import parse_model_source

#: How a family of networks is called in the interface.
FAMILY_NAMES = {"clip": "CLIP denoiser", "idf": "IDF"}
DEMONSTRATION_NOTE = "random encoder: a demonstration model, not the paper's"
RANDOM_WEIGHTS_NOTE = "random weights (for testing): its output is not a denoised image"


@dataclass(frozen=True)
class ModelSummary:
    """A model source as the interface shows it.

    Attributes
    ----------
    source : str
        What was described (a name or a path).
    kind : str
        ``parse_model_source``'s kind: installed, bundled, registry, file, url, unknown.
    name : str
        A short name: the model's name, or a file's stem.
    loadable : bool
        ``load_model`` can load it now, offline.
    description : str
        One line: what it was trained on and what it is for ("" when nothing is known).
    family : str or None
        The network family (``"clip"``, ``"idf"``) when known.
    demonstration : bool
        The weights were trained with a random encoder (the demonstration model).
    warning : str
        What a person must know before trusting the output ("" for none): a
        demonstration model, or random weights.
    release : str or None
        Where the weights can be obtained (a registry entry's source).
    hint : str
        What to do when it is not loadable ("" when it is).
    """

    source: str
    kind: str
    name: str
    loadable: bool
    description: str = ""
    family: str | None = None
    demonstration: bool = False
    warning: str = ""
    release: str | None = None
    hint: str = ""

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family or "", self.family or "")


def _project_header(path) -> dict | None:
    """The project metadata of a ``.safetensors`` checkpoint, or None (other formats, unreadable files)."""
    try:
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="numpy") as handle:
            header = handle.metadata() or {}
        return json.loads(header["metadata"]) if "metadata" in header else None
    except Exception:  # noqa: BLE001 - a summary never fails; loading reports the real error
        return None


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    head, dot, _ = text.partition(". ")
    return head + ("." if dot else "")


def describe_model(source) -> ModelSummary:
    """Describe ``source`` (see :class:`ModelSummary`) without loading its weights."""
    from .registry import BUNDLED, REGISTRY, install_hint

    parsed = parse_model_source(source)
    text = parsed.text
    name = parsed.name or text
    entry = REGISTRY.get(name) if parsed.kind in ("installed", "bundled", "registry") else None
    family = getattr(entry, "family", None)
    parts: list[str] = []
    metadata: dict | None = None
    if parsed.path is not None and parsed.exists and str(parsed.path).endswith(".safetensors"):
        metadata = _project_header(parsed.path)
    bundled = BUNDLED.get(name) if parsed.kind == "bundled" else None
    metadata = metadata or {}
    family = metadata.get("family", family)
    noise = metadata.get("noise") or (entry.noise if entry else "")
    if noise:
        parts.append(f"Trained on {noise}.")
    # a registry or bundled model's own description is written for users; a file's adds to its noise only when
    # the noise is unknown (training recipes repeat it)
    described = (entry.description if entry else "") or (bundled.description if bundled else "")
    if not described and not noise:
        described = metadata.get("description", "")
    if described:
        parts.append(_first_sentence(described))
    if not parts and parsed.kind == "file" and parsed.exists:
        parts.append("Checkpoint file; what it was trained on is shown once it is loaded.")
    demonstration = bool(metadata.get("random_encoder"))
    warning = DEMONSTRATION_NOTE if demonstration else ""
    if metadata.get("random_weights"):
        warning = RANDOM_WEIGHTS_NOTE
    hint = ""
    if not parsed.loadable:
        if parsed.kind == "file":
            hint = f"checkpoint file not found: {parsed.path}"
        elif parsed.kind == "url":
            hint = "a URL: install it once under a name (nothing is downloaded implicitly)"
        else:
            hint = install_hint(text)
    return ModelSummary(
        source=text,
        kind=parsed.kind,
        name=name,
        loadable=parsed.loadable,
        description=" ".join(parts),
        family=family,
        demonstration=demonstration,
        warning=warning,
        release=getattr(entry, "source", None) if entry is not None else None,
        hint=hint,
    )


def available_models() -> list[str]:
    """Every model name the interface should offer: registry entries, bundled and installed models.

    Registry order first, then bundled, then other installed names (sorted).
    """
    from .registry import BUNDLED, REGISTRY, installed_models

    names = list(REGISTRY)
    names += [name for name in BUNDLED if name not in names]
    names += [name for name in sorted(installed_models()) if name not in names]
    return names
