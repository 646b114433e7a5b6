"""Importing torch from a worker thread: its libraries are loaded first, without the interpreter lock."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import sys, threading, time
from napari_clipdenoise import _torch

# another thread keeps ticking while the libraries load (the foreign dlopen call drops the lock)
ticks = []
stop = threading.Event()
def tick():
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
thread = threading.Thread(target=tick)
thread.start()
time.sleep(0.05)
started = time.perf_counter()
loaded = _torch.preload_torch_libraries()
ended = time.perf_counter()
stop.set()
thread.join()
assert "torch" not in sys.modules, "preloading must not import torch"
inside = [t for t in ticks if started < t < ended]
print("loaded", ",".join(loaded))
print("ms", round((ended - started) * 1000))
print("ticks", len(inside))
print("sum", float(_torch.import_torch().arange(4.0).sum()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preload is Linux-only")
def test_preload_loads_torch_libraries_without_importing_torch_and_torch_then_works():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["loaded"].split(",") == ["libc10.so", "libtorch_cpu.so", "libtorch.so"]
    if int(lines["ms"]) >= 40:  # the other thread ran while the libraries loaded (one tick per 1-2 ms)
        assert int(lines["ticks"]) >= int(lines["ms"]) // 10, done.stdout
    assert lines["sum"] == "6.0"


def test_preload_is_a_no_op_once_torch_is_imported():
    import torch  # noqa: F401

    from napari_clipdenoise import _torch

    assert _torch.preload_torch_libraries() == []
    assert _torch.import_torch() is sys.modules["torch"]


def test_a_failing_preload_leaves_the_job_to_report_for_itself(qtbot, monkeypatch):
    """The head start is optional: if importing torch fails there, the job still runs and says why."""
    pytest.importorskip("napari")
    from napari_clipdenoise import _torch
    from napari_clipdenoise.widgets._worker import job_worker

    def broken():
        raise ImportError("no torch here")

    monkeypatch.setattr(_torch, "import_torch", broken)

    def job(value):
        yield "started"
        return value * 2

    worker = job_worker(job, 21)
    returned, errors = [], []
    worker.returned.connect(returned.append)
    worker.errored.connect(errors.append)
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        worker.start()
    assert returned == [42] and errors == []


GC_CHILD = r"""
import gc, sys
heap = [[i] for i in range(300_000)]  # a napari-sized heap of long-lived objects
gc.collect()
if sys.argv[1] == "frozen":
    gc.freeze()
frozen_before = gc.get_freeze_count()
full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
if sys.argv[1] == "plain":
    import torch
else:
    from napari_clipdenoise import _torch
    torch = _torch.import_torch()
print("full", len(full))
print("enabled", gc.isenabled())
print("frozen", gc.get_freeze_count() if frozen_before else 0)
print("frozen_before", frozen_before)
print("sum", float(torch.arange(4.0).sum()))
"""


def _gc_child(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", GC_CHILD, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_importing_torch_sets_off_no_full_garbage_collection_and_leaves_nothing_frozen():
    plain = _gc_child("plain")
    assert int(plain["full"]) >= 1  # a plain import walks the whole heap (what stalled the viewer)
    ours = _gc_child("ours")
    assert ours == {"full": "0", "enabled": "True", "frozen": "0", "frozen_before": "0", "sum": "6.0"}
    frozen = _gc_child("frozen")  # objects the process froze itself stay frozen (none are unfrozen)
    assert frozen["enabled"] == "True" and frozen["sum"] == "6.0"
    assert int(frozen["frozen"]) >= 0.9 * int(frozen["frozen_before"]) > 0


NICE_CHILD = r"""
import os, sys, threading
from napari_clipdenoise import _torch
seen = {}
original = _torch.preload_torch_libraries
def recording():
    seen["thread"] = threading.current_thread().name
    seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    return original()
_torch.preload_torch_libraries = recording
before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
torch = _torch.import_torch()
after = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
print("thread", seen["thread"])
print("lower", seen["nice"] - before)
print("caller", after - before)
print("sum", float(torch.arange(4.0).sum()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux-only")
def test_torch_is_imported_by_a_thread_of_lower_priority_and_the_caller_keeps_its_own():
    done = subprocess.run([sys.executable, "-c", NICE_CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["thread"] == "clipdenoise-import-torch"
    assert int(lines["lower"]) > 0  # up to 10 steps lower (19 is the floor)
    assert lines["caller"] == "0" and lines["sum"] == "6.0"


def test_an_import_failure_reaches_the_caller(monkeypatch):
    from napari_clipdenoise import _torch

    def broken():
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    with pytest.raises(ImportError, match="libtorch_cpu"):
        _torch._in_a_humble_thread(broken)
