"""Hand a zarr input to the dask block engine (``napari_clipdenoise.distributed``) when ``--scheduler`` asks for it."""

from __future__ import annotations

from pathlib import Path

MISSING_MESSAGE = (
    "--scheduler needs the dask block engine (the dask extra), which cannot be imported here ({error})."
    " Install it (pip install 'napari-clipdenoise[dask]') or run without --scheduler to denoise on this machine"
)


def check_engine() -> None:
    """Raise RuntimeError saying what to install when the dask engine's packages are missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import zarr  # noqa: F401

        from ..distributed import denoise_zarr  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(MISSING_MESSAGE.format(error=exc)) from exc


def check_declared_size_of(source: Path, max_pixels) -> None:
    """The declared-size limit (``--max-pixels``) for an input the dask engine will read (array or OME-Zarr level 0)."""
    import zarr

    from ..formats.base import check_declared_size

    node = zarr.open(str(source), mode="r")
    arrays = [node] if isinstance(node, zarr.Array) else [a for _, a in node.arrays()]
    if arrays:  # an OME-Zarr group: its largest array is level 0, the one denoised
        largest = max(arrays, key=lambda a: a.size)
        check_declared_size(largest.shape, largest.dtype, max_pixels, what="the zarr input")


def denoise_zarr_distributed(
    source: Path, output: Path, model_spec: str, scheduler, options, *, axes=None, overwrite=False, progress=None
):
    """Run ``denoise_zarr`` on the scheduler; it writes ``output`` itself (resumably, block by block).

    Returns what ``denoise_zarr`` returns (its run report).
    """
    check_engine()
    from ..distributed import denoise_zarr

    return denoise_zarr(
        str(source),
        str(output),
        model_spec,
        scheduler=scheduler,
        options=options,
        axes=axes,
        overwrite=overwrite,
        progress=progress,
    )


def check_scheduler(address: str, *, timeout: float = 5.0) -> None:
    """Raise ValueError when ``address`` is no scheduler ``denoise_zarr`` takes, or cannot be reached.

    ``local``, ``local:N`` (N >= 1) and ``sync`` start nothing here; an address
    (``tcp://host:port``, ``tls://...``) is tried once with a plain connection of
    at most ``timeout`` seconds, so a typo or a scheduler that is not running is
    found before any work, once for the whole batch.
    """
    import socket
    import urllib.parse

    text = address.strip()
    if text in ("local", "sync", "synchronous"):
        return
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{address!r}: local:N needs a number of worker processes N >= 1, e.g. local:2")
        return
    if "://" not in text:
        raise ValueError(f"{address!r} is not a scheduler: use local, local:N or an address such as tcp://host:8786")
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("tcp", "tls", "ws", "wss") or not parsed.hostname:
        raise ValueError(f"{address!r} is not a scheduler address such as tcp://host:8786")
    try:
        port = parsed.port or 8786
    except ValueError:
        raise ValueError(f"{address!r} has no valid port number (e.g. tcp://host:8786)") from None
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise ValueError(
            f"cannot reach the dask scheduler at {address} ({reason}); start it first, check the address,"
            " or use --scheduler local"
        ) from None
