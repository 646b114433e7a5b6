"""Compatibility: ``src_training.data`` is now :mod:`napari_clipdenoise.training.data`."""

from napari_clipdenoise.training.data import *  # noqa: F403
