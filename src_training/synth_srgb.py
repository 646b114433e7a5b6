"""Compatibility: ``python -m src_training.synth_srgb`` runs :mod:`napari_clipdenoise.training.synth_srgb`."""

import sys

from napari_clipdenoise.training.synth_srgb import *  # noqa: F403
from napari_clipdenoise.training.synth_srgb import main

if __name__ == "__main__":
    sys.exit(main())
