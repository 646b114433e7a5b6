"""Axes, normalisation, tiling and the denoise pipeline."""
