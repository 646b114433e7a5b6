"""Compatibility: ``src_training.config`` is now :mod:`napari_clipdenoise.training.config`."""

from napari_clipdenoise.training.config import *  # noqa: F403
