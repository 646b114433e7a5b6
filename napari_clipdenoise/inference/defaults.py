"""Default inference settings, importable without torch (the CLI and widgets show them)."""

#: Default tile edge in pixels; see docs/tiling.md for the measurement behind it.
DEFAULT_TILE_SIZE = 1024
#: Default overlap between neighbouring tiles; see docs/tiling.md.
DEFAULT_OVERLAP = 256
