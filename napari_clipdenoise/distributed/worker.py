"""What runs inside a dask task: load the model once per process, denoise one block, write it, mark it done.

Everything a task needs travels in a small picklable :class:`BlockJob`; the
pixels are read from the input store by the task itself (zarr inputs) or arrive
as the task's dask dependency (dask inputs), and are written straight into the
output store. Nothing large goes back to the client.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..inference.options import InferenceOptions
from .blocks import Block
from .store import JobState, ZarrLocation

_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()
_LOADS = {"count": 0}


@dataclass(frozen=True)
class BlockJob:
    """Everything a block task needs, identical for every block of a run.

    ``options`` carry the intensity range of every channel group, measured once on
    the client; device, precision and batch size are resolved by each worker for
    its own hardware.
    """

    output: ZarrLocation
    state_root: str
    model_path: str
    model_sha256: str
    axes: str
    rgb: bool
    y_axis: int
    x_axis: int
    image_size: tuple[int, int]  # the whole image's Y, X: its tile plan and upsampling grid
    options: InferenceOptions
    exact: bool  # blocks on the whole image's tile plan (halo=None), else tiled on their own
    input: ZarrLocation | None = None  # None: the pixels arrive as a dask dependency


def cached_model(path: str, sha256: str):
    """The model at ``path``, loaded once per process and reused by every later task.

    The file's sha256 is checked against the one the client saw, so a checkpoint
    replaced during a run cannot mix two models into one output.
    """
    key = (path, sha256)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from ..errors import CheckpointError
            from ..model.checkpoints import file_sha256
            from ..model.registry import load_model

            actual = file_sha256(path)
            if actual != sha256:
                raise CheckpointError(
                    f"checkpoint {path} changed since the job started (sha256 {actual}, expected {sha256});"
                    " restart the job"
                )
            model = load_model(path)
            _MODELS[key] = model
            _LOADS["count"] += 1
    return model


def model_loads() -> int:
    """How many times this process loaded a model (for tests and diagnostics)."""
    return _LOADS["count"]


def worker_device(device: str | None) -> str | None:
    """``None``/``"auto"`` on a dask worker of a machine with several GPUs: spread workers over them.

    Workers named 0, 1, ... (LocalCluster) take GPU ``name % count``; with
    dask-cuda each worker sees only its own GPU and this is a no-op.
    """
    if device not in (None, "auto"):
        return device
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # pragma: no cover - torch without CUDA support
        return device
    if count < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    return f"cuda:{int(name) % count}" if isinstance(name, int) or str(name).isdigit() else device


class _ClusterCancel:
    """``cancel`` for the core, reading a ``distributed.Event`` at most every ``interval`` seconds."""

    def __init__(self, name: str, interval: float = 0.5):
        self.name, self.interval = name, interval
        self.checked, self.value, self.event = 0.0, False, None

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.checked >= self.interval:
            self.checked = now
            try:
                if self.event is None:
                    from distributed import Event

                    self.event = Event(self.name)
                self.value = self.event.is_set()
            except Exception:  # no client reachable from here: cannot be cancelled early
                self.value = False
        return self.value


def _cancel_check(cancel):
    if cancel is None or callable(cancel):
        return cancel
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return _ClusterCancel(str(cancel))


def _denoise_block(job: BlockJob, data: np.ndarray, origin: tuple[int, int], cancel=None) -> np.ndarray:
    from ..inference.pipeline import ImageWindow, denoise

    model = cached_model(job.model_path, job.model_sha256)
    window = ImageWindow(*job.image_size, *origin, exact=job.exact)
    options = job.options.replace(device=worker_device(job.options.device))
    return denoise(data, model, axes=job.axes, rgb=job.rgb, options=options, window=window, cancel=cancel)


def run_block(job: BlockJob, block: Block, data: np.ndarray | None = None, cancel=None) -> dict:
    """Denoise one block (read with its halo), write its core into the output, then mark it done.

    ``cancel`` is a callable / Event (in-process runs) or the name of a
    ``distributed.Event`` (cluster runs): when it is set the block stops between
    tile batches with ``DenoiseCancelled``, before anything is written.
    Returns a small summary: the block key, pixels written, seconds, process id.
    """
    start = time.perf_counter()
    if data is None:
        data = np.asarray(job.input.open("r")[block.read_slices()])
    else:
        data = np.asarray(data)
    if data.shape != tuple(b - a for a, b in block.read):
        raise ValueError(f"block {block.key}: read {data.shape}, expected {block.read}")
    origin = (block.read[job.y_axis][0], block.read[job.x_axis][0])
    result = _denoise_block(job, data, origin, _cancel_check(cancel))
    output = job.output.open("r+")
    output[block.core_slices()] = result[block.crop_slices()]
    seconds = time.perf_counter() - start
    info = {"block": block.key, "pixels": block.size, "seconds": round(seconds, 4), "pid": os.getpid()}
    JobState(job.state_root).mark_done(block.key, info)
    return info
