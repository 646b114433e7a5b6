"""Compatibility: ``python -m src_training.demo`` runs :mod:`napari_clipdenoise.training.demo`."""

import sys

from napari_clipdenoise.training.demo import *  # noqa: F403
from napari_clipdenoise.training.demo import main

if __name__ == "__main__":
    sys.exit(main())
