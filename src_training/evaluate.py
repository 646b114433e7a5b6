"""Compatibility: ``python -m src_training.evaluate`` runs :mod:`napari_clipdenoise.training.evaluate`."""

import sys

from napari_clipdenoise.training.evaluate import *  # noqa: F403
from napari_clipdenoise.training.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
