"""Compatibility package: the training and evaluation code lives in :mod:`napari_clipdenoise.training`.

``python -m src_training.train|evaluate|synth_srgb|demo`` keep working and run the
same commands as ``python -m napari_clipdenoise.training.<name>``.
"""
