"""Compatibility: ``src_training.augment`` is now :mod:`napari_clipdenoise.training.augment`."""

from napari_clipdenoise.training.augment import *  # noqa: F403
