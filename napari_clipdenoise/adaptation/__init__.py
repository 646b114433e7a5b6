"""Adapt a CLIPDenoiser to the user's own noisy images: self-supervised fine-tuning without clean targets.

Modules (each with one job): ``settings`` (:class:`AdaptSettings`, validated),
``masking`` (which pixels are hidden and what replaces them), ``sampling`` (the
inputs on the network's scale, training and held-out crops) and ``loop``
(:func:`adapt`: the training loop, its state file and the result's provenance).
See docs/adapt.md. Importing this package imports nothing heavy.
"""

from .._lazy import lazy_exports

_LAZY = {
    "adapt": "napari_clipdenoise.adaptation.loop",
    "AdaptProgress": "napari_clipdenoise.adaptation.loop",
    "AdaptError": "napari_clipdenoise.adaptation.loop",
    "read_state": "napari_clipdenoise.adaptation.loop",
    "AdaptSettings": "napari_clipdenoise.adaptation.settings",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
