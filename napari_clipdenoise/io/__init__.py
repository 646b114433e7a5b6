"""File input/output for the batch mode: format readers and writers, atomic outputs, provenance.

Modules (each with one job): ``formats`` (which format, open/write dispatch),
``tiff``, ``raster`` (PNG/JPEG), ``arrays`` (NPY, zarr), ``atomic`` (temporary
file + rename), ``provenance``, ``discovery`` (inputs -> jobs), ``batch`` (one
file end to end), ``progress`` and ``report``. Importing this package imports
neither torch nor any image library.
"""
