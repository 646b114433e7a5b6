"""Importing torch from a worker thread without freezing the other threads (the napari viewer).

``import torch`` loads torch's C++ libraries with the interpreter lock held: on a
2-core AMD EPYC the GUI thread stood still for 0.3-0.8 s during a first run. Most
of that is the dynamic loader mapping and initialising ``libtorch_cpu`` (hundreds
of MB). :func:`import_torch` loads those libraries first through a ctypes call
of ``dlopen`` (ctypes releases the lock around foreign calls), so the import that
follows finds them loaded and holds the lock only for its own module set-up.
On that machine the longest stall of a first Denoise run went from 796 ms to
181-384 ms (``benchmarks/gui_stalls.py``; figures in docs/napari.md). Two more
measures took it to 92-159 ms: the import runs in a short-lived thread of lower
priority, and it sets off no full garbage collection (see :func:`import_torch`).

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
                    _in_a_humble_thread(_load_and_import)
    import torch

    return torch


#: How much lower (``nice`` steps) the thread that imports torch runs than the rest of the process.
IMPORT_NICENESS = 10


def _load_and_import() -> None:
    preload_torch_libraries()
    import torch  # noqa: F401 (the import is the point)


def _in_a_humble_thread(work) -> None:
    """Run ``work`` in a short-lived thread of lower scheduling priority, and wait for it.

    Loading torch is seconds of CPU work. On a small machine it competed with
    the viewer for the cores (under Xvfb, napari's frames are drawn by software
    OpenGL threads): the GUI thread waited for its frame up to 0.3 s. At a lower
    priority the import yields the CPU to them (first-run stalls 123-305 ms ->
    75-147 ms). A thread of its own, because on Linux an unprivileged process
    cannot raise a thread's priority back: the worker that asked stays as it was.
    """
    failure: list[BaseException] = []

    def run():
        try:
            if sys.platform.startswith("linux"):
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + IMPORT_NICENESS))
        except (OSError, AttributeError):  # best effort: the import works the same without it
            pass
        try:
            work()
        except BaseException as exc:  # re-raised in the thread that asked
            failure.append(exc)

    thread = threading.Thread(target=run, name="clipdenoise-import-torch", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


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
