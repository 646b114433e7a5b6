"""Training and evaluation of CLIPDenoiser models (the reference recipes and the paper's protocol).

Entry points
------------
``python -m napari_clipdenoise.training.train CONFIG``
    Train or fine-tune a decoder from a TOML recipe (``gaussian15``, ``srgb``,
    ``ldct`` or a file), every field overridable on the command line.
``python -m napari_clipdenoise.training.evaluate --sets DIR ... --methods ...``
    Score checkpoints, registry models, ``noisy`` and classical baselines on the
    paper's out-of-distribution noise grid.
``python -m napari_clipdenoise.training.synth_srgb``
    Offline synthesis of (noisy, clean) sRGB pairs with a CBDNet-style camera pipeline.
``python -m napari_clipdenoise.training.demo``
    A CPU demonstration on scikit-image's bundled images (random encoder: not the paper's model).

See docs/training.md.

Importing this package imports nothing heavy; torch is imported by the modules that need it.
"""
