"""Importing torch from a worker thread without freezing the other threads (the napari viewer).

``import torch`` loads torch's C++ libraries with the interpreter lock held: on a
2-core AMD EPYC the GUI thread stood still for 0.3-0.8 s during a first run. Most
of that is the dynamic loader mapping and initialising ``libtorch_cpu`` (hundreds
of MB). :func:`import_torch` loads those libraries first through a ctypes call
of ``dlopen`` (ctypes releases the lock around foreign calls), so the import that
follows finds them loaded and holds the lock only for its own module set-up.
On that machine the longest stall of a first Denoise run went from 796 ms to
194 ms (``benchmarks/gui_stalls.py``; figures in docs/napari.md).

It changes nothing but timing: the libraries are the ones ``import torch`` loads
(from torch's own ``lib`` folder, ``RTLD_GLOBAL`` as torch does); anything that
fails is ignored and torch then loads them itself. Linux only; elsewhere it is
a plain import.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

#: torch's libraries loaded ahead, in dependency order (names without the GPU builds' suffixes).
PRELOADED = ("libc10.so", "libtorch_cpu.so", "libtorch.so")

_lock = threading.Lock()


def _torch_library_folder() -> str | None:
    spec = importlib.util.find_spec("torch")  # finds torch without importing it
    if spec is None or not spec.origin:
        return None
    return os.path.join(os.path.dirname(spec.origin), "lib")


def preload_torch_libraries() -> list[str]:
    """``dlopen`` torch's big libraries without holding the interpreter lock; the names that loaded."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return []
    folder = _torch_library_folder()
    if folder is None:
        return []
    try:
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
    except (OSError, AttributeError):
        return []
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    loaded = []
    for name in PRELOADED:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        # a foreign call through ctypes.CDLL runs with the interpreter lock released
        if dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_GLOBAL):
            loaded.append(name)
        else:
            logger.debug("could not preload %s; torch will load it itself", path)
            break
    return loaded


def import_torch():
    """Import torch (once), loading its libraries first without holding the interpreter lock.

    Python's automatic garbage collection is paused during the import: torch's
    modules add about 150,000 objects that live as long as the process, and in a
    napari process that many new objects set off a full collection walking the
    whole heap (0.15-0.25 s with every thread stopped). Afterwards the new objects
    go straight to the oldest generation (``gc.freeze()`` then ``gc.unfreeze()``:
    nothing stays frozen, garbage among them is still collected by the next full
    collection, which comes when the heap grows as it would have anyway). Skipped
    when the process froze objects of its own (``gc.get_freeze_count()``).
    """
    if "torch" not in sys.modules:
        with _lock:
            if "torch" not in sys.modules:
                with _collection_paused():
                    preload_torch_libraries()
                    import torch  # noqa: F401 (the import is the point)
    import torch

    return torch


class _collection_paused:  # noqa: N801 (a context manager used like a function)
    """Pause automatic garbage collection; afterwards file everything allocated meanwhile as old."""

    def __enter__(self):
        self.enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            if gc.get_freeze_count() == 0:  # never unfreeze what someone else froze
                gc.freeze()
                gc.unfreeze()
            gc.enable()
        return False
