"""``python -m napari_clipdenoise.cli``: the same as the ``clipdenoise`` command."""

import sys

from . import main

sys.exit(main())
