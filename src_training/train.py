"""Compatibility: ``python -m src_training.train`` runs :mod:`napari_clipdenoise.training.train`."""

import sys

from napari_clipdenoise.training.train import *  # noqa: F403
from napari_clipdenoise.training.train import main

if __name__ == "__main__":
    sys.exit(main())
