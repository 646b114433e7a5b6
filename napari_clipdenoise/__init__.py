"""napari-clipdenoise: generalizable image denoising with a frozen CLIP encoder.

The public API is imported lazily so that ``import napari_clipdenoise`` (and
napari's plugin discovery) never imports torch, napari or Qt.
"""

from ._version import __version__

_LAZY = {
    "load_model": "napari_clipdenoise.model.registry",
    "install_model": "napari_clipdenoise.model.registry",
    "installed_models": "napari_clipdenoise.model.registry",
    "cache_dir": "napari_clipdenoise.model.registry",
    "REGISTRY": "napari_clipdenoise.model.registry",
    "DenoisingModel": "napari_clipdenoise.model.registry",
    "denoise": "napari_clipdenoise.inference.pipeline",
    "plan_denoise": "napari_clipdenoise.inference.pipeline",
    "guess_axes": "napari_clipdenoise.inference.axes",
    "CLIPDenoiser": "napari_clipdenoise.model.network",
    "save_checkpoint": "napari_clipdenoise.model.checkpoints",
    "load_checkpoint": "napari_clipdenoise.model.checkpoints",
    "CheckpointError": "napari_clipdenoise.errors",
    "ModelNotInstalledError": "napari_clipdenoise.errors",
    "DenoiseCancelled": "napari_clipdenoise.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_clipdenoise' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
