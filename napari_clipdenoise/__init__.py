"""napari-clipdenoise: generalizable image denoising with a frozen CLIP encoder.

The public API is imported lazily so that ``import napari_clipdenoise`` (and
napari's plugin discovery) never imports torch, napari or Qt.
"""

from ._lazy import lazy_exports

try:
    from ._version import __version__  # written from the git tag when the package is installed
except ImportError:  # a source tree that was never installed
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("napari-clipdenoise")
    except PackageNotFoundError:
        __version__ = "0+unknown"

_LAZY = {
    "load_model": "napari_clipdenoise.model.registry",
    "install_model": "napari_clipdenoise.model.registry",
    "installed_models": "napari_clipdenoise.model.registry",
    "cache_dir": "napari_clipdenoise.model.registry",
    "REGISTRY": "napari_clipdenoise.model.registry",
    "DenoisingModel": "napari_clipdenoise.model.registry",
    "denoise": "napari_clipdenoise.inference.pipeline",
    "plan_denoise": "napari_clipdenoise.inference.pipeline",
    "adapt": "napari_clipdenoise.adaptation.loop",
    "AdaptSettings": "napari_clipdenoise.adaptation.settings",
    "guess_axes": "napari_clipdenoise.inference.axes",
    "CLIPDenoiser": "napari_clipdenoise.model.network",
    "save_checkpoint": "napari_clipdenoise.model.checkpoints",
    "load_checkpoint": "napari_clipdenoise.model.loading",
    "CheckpointError": "napari_clipdenoise.errors",
    "ModelNotInstalledError": "napari_clipdenoise.errors",
    "DenoiseCancelled": "napari_clipdenoise.errors",
    "AdaptCancelled": "napari_clipdenoise.errors",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
