"""napari dock widgets. Importing this package imports neither torch nor a model.

``denoise.DenoiseWidget`` and ``compare.CompareWidget`` are the two widgets the
manifest (napari.yaml) contributes; the underscored modules are their parts.
"""
