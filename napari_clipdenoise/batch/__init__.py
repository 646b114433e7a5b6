"""The batch application behind ``clipdenoise denoise``: inputs to jobs, one file end to end, progress, report.

Modules: ``discovery`` (files, folders, patterns -> input/output jobs),
``runner`` (one job: open, plan, denoise, write atomically with provenance),
``progress`` (terminal progress), ``report`` (per-file records, the JSON report)
and ``scale_out`` (handing zarr inputs to the dask engine). Importing this
package imports neither torch nor any image library.
"""
