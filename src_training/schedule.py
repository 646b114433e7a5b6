"""Compatibility: ``src_training.schedule`` is now :mod:`napari_clipdenoise.training.schedule`."""

from napari_clipdenoise.training.schedule import *  # noqa: F403
