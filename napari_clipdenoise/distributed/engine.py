"""``denoise_zarr``: denoise a zarr / OME-Zarr / dask volume block by block on a dask cluster, resumably.

Client side: open the input, plan the blocks, compute the global intensity
ranges once, create (or reopen) the output, submit one dask task per unfinished
block, report progress, then rebuild the pyramid levels. The task side is
:mod:`napari_clipdenoise.distributed.worker`.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..errors import DenoiseCancelled
from ..inference.options import InferenceOptions, OptionError
from .blocks import BlockPlan, plan_blocks
from .store import (
    InputSource,
    JobState,
    create_output,
    downsample_level,
    mark_complete,
    open_input,
    open_output,
    read_completion,
    remove_output,
)
from .worker import BlockJob, run_block

logger = logging.getLogger(__name__)

JOB_VERSION = 3  # 3: the identity holds the input's content signature
#: Times dask re-runs a block task that raised (a killed worker is rescheduled by dask anyway).
DEFAULT_RETRIES = 2
#: Options that do not change the pixels written, left out of the job identity (a job may resume elsewhere).
_PLACEMENT_OPTIONS = ("device", "batch_size", "channels_last")


# ---------------------------------------------------------------- schedulers


class _SyncRunner:
    """Blocks one after another in this process (no dask client)."""

    description = "synchronous (this process)"

    def cancel_token(self, should_stop, name: str):
        return should_stop  # tasks run here: they can call it directly

    def run(self, tasks, on_done, should_stop):
        import dask

        for block, task in tasks:
            if should_stop():
                raise DenoiseCancelled("denoising was cancelled")
            try:
                (info,) = dask.compute(task, scheduler="sync")
            except Exception as exc:
                if not isinstance(exc, DenoiseCancelled):
                    exc.add_note(f"while denoising block {block.key} (core {block.core})")
                raise
            on_done(block, info)

    def compute(self, graph):
        import dask

        dask.compute(graph, scheduler="sync")


class _ClientRunner:
    """Blocks as futures on a ``dask.distributed`` client, collected as they finish."""

    def __init__(self, client, retries: int):
        self.client = client
        self.retries = retries
        self.description = f"dask.distributed {client.scheduler.address}"
        self.event = None

    def cancel_token(self, should_stop, name: str):
        """A ``distributed.Event`` name the tasks poll, set when ``should_stop`` fires."""
        from distributed import Event

        self.event = Event(name, client=self.client)
        self.event.clear()
        return name

    def run(self, tasks, on_done, should_stop):
        from distributed import as_completed

        futures = self.client.compute([task for _, task in tasks], retries=self.retries)
        block_of = {future.key: block for future, (block, _) in zip(futures, tasks, strict=True)}
        pending = set(futures)
        finished_ok = False
        try:
            completed = as_completed(futures)
            while not completed.is_empty():
                if should_stop():
                    raise DenoiseCancelled("denoising was cancelled")
                batch = completed.next_batch(block=False)
                if not batch:
                    time.sleep(0.1)
                    continue
                for future in batch:
                    pending.discard(future)
                    block = block_of[future.key]
                    try:
                        info = future.result()
                    except Exception as exc:
                        exc.add_note(f"while denoising block {block.key} (core {block.core}) on the dask cluster")
                        raise
                    on_done(block, info)
            finished_ok = True
        finally:
            if not finished_ok:
                if self.event is not None:
                    self.event.set()  # blocks already running stop at their next tile batch
                if pending:
                    self.client.cancel(list(pending))

    def compute(self, graph):
        self.client.compute(graph, retries=self.retries).result()


@contextlib.contextmanager
def _open_scheduler(scheduler, retries: int):
    """Yield a runner for ``scheduler`` (see ``denoise_zarr``); clusters started here are closed after."""
    if scheduler in (None, "sync", "synchronous"):
        client = None
        if scheduler is None:
            try:
                from distributed import default_client

                client = default_client()
            except (ImportError, ValueError):
                client = None
        yield _ClientRunner(client, retries) if client is not None else _SyncRunner()
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency of this extra
        raise ImportError("scheduler= needs dask.distributed: pip install 'napari-clipdenoise[dask]'") from exc
    if isinstance(scheduler, Client):
        yield _ClientRunner(scheduler, retries)
        return
    if not isinstance(scheduler, str):
        raise TypeError(
            f"scheduler must be None, 'local', 'local:N', an address or a Client, got {type(scheduler).__name__}"
        )
    if scheduler == "local" or scheduler.startswith("local:"):
        workers = _local_worker_count(scheduler)
        threads = max(1, (os.cpu_count() or 1) // workers)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
        )
        try:
            with Client(cluster) as client:
                runner = _ClientRunner(client, retries)
                runner.description = f"LocalCluster ({workers} worker process{'es' if workers > 1 else ''})"
                yield runner
        finally:
            cluster.close()
        return
    if "://" not in scheduler:
        raise ValueError(
            f"scheduler must be 'local', 'local:N' or a scheduler address such as 'tcp://host:8786', got {scheduler!r}"
        )
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise ConnectionError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from exc
    with client:
        yield _ClientRunner(client, retries)


def _local_worker_count(scheduler: str) -> int:
    if scheduler == "local":
        try:
            import torch

            return max(1, torch.cuda.device_count())
        except ImportError:  # pragma: no cover
            return 1
    text = scheduler.split(":", 1)[1]
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"scheduler 'local:N' needs a worker count N >= 1, got {scheduler!r}")
    return int(text)


def _progress_caller(progress):
    """Call ``progress(done, total)``, or ``progress(done, total, stats)`` when it takes three arguments."""
    if progress is None:
        return lambda done, total, stats: None
    if not callable(progress):
        raise TypeError(f"progress must be a callable(done, total[, stats]), got {type(progress).__name__}")
    try:
        parameters = inspect.signature(progress).parameters.values()
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        three = any(p.kind == p.VAR_POSITIONAL for p in parameters) or len(positional) >= 3
    except (TypeError, ValueError):
        three = False
    return (lambda d, t, s: progress(d, t, s)) if three else (lambda d, t, s: progress(d, t))


# ---------------------------------------------------------------- validation


def _resolve_model(model) -> tuple[object, str, str]:
    """Load the model on the client (validates it early) -> (model, absolute path, sha256 of the file)."""
    from ..model.checkpoints import file_sha256
    from ..model.registry import DenoisingModel, load_model

    if isinstance(model, DenoisingModel) and model.path is None:
        raise ValueError(
            "model must be a registry name or a checkpoint path (workers load it from the file), "
            "got a DenoisingModel without a file path"
        )
    loaded = load_model(model.path if isinstance(model, DenoisingModel) else model)
    path = str(Path(loaded.path).resolve())
    return loaded, path, file_sha256(path)


def _check_not_input(output: Path, source: InputSource) -> None:
    """The rule every face shares (``formats.safety.check_not_input``): never into, onto or around the input."""
    from ..formats.safety import check_not_input

    check_not_input(output, source.local_paths())


def _input_content(source: InputSource) -> dict | None:
    """Size and modification time of every file of the input array (a resumed job must read the same data)."""
    from ..formats.safety import input_signature

    if source.location is None:
        return None  # a dask array: its name is already a hash of its content and graph
    return input_signature(Path(source.location.root) / source.location.path)


def _fingerprint(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the engine


def denoise_zarr(
    input,
    output_path,
    model,
    *,
    scheduler=None,
    options: InferenceOptions | dict | None = None,
    axes: str | None = None,
    progress=None,
    cancel=None,
    overwrite: bool = False,
    block_size: int | None = None,
    halo: int | None = None,
    retries: int = DEFAULT_RETRIES,
    **option_overrides,
) -> dict:
    """Denoise a large volume block by block with dask, writing a zarr store; resumable.

    Parameters
    ----------
    input : zarr.Array, zarr.Group, path, or dask/numpy array
        A zarr array; a path to a zarr array or to an OME-Zarr group (its first
        multiscale level is denoised and the other levels are rebuilt from it);
        or a dask array (its chunks become the output chunks).
    output_path : path
        The zarr store to create: an OME-Zarr group for OME-Zarr input, else one
        array, with the input's shape, dtype, chunks, shards and codecs. An
        existing output of the same job is resumed (finished blocks are skipped).
    model : str or path
        A registry name or checkpoint path; every worker loads it once and reuses it.
    scheduler : None, "local", "local:N", "sync", address or distributed.Client
        None: the current dask client if there is one, else this process.
        "local": a LocalCluster with one worker process per GPU (one on CPU-only
        machines); "local:N": N worker processes; "tcp://host:port": an existing
        scheduler (e.g. a dask-jobqueue or dask-cuda cluster).
    options : InferenceOptions or dict, optional
        As for :func:`napari_clipdenoise.denoise` (any field may also be passed as a
        keyword, e.g. ``tile_size=512``); device, precision and batch size are
        resolved on each worker. ``intensity_range`` is computed once for the whole
        volume (per channel for non-RGB channels) and used by every block.
    axes : str, optional
        Axis letters (e.g. "CZYX"); default from the OME-Zarr metadata, else guessed.
    progress : callable, optional
        ``progress(done, total)`` or ``progress(done, total, stats)`` after each
        block; ``stats`` has ``skipped``, ``megapixels``, ``seconds``, ``mpx_per_s``.
    cancel : callable or threading.Event, optional
        Checked while waiting for blocks; raises ``DenoiseCancelled`` (whose
        ``report`` attribute holds the report so far). Finished blocks stay done.
    overwrite : bool
        Delete an existing ``output_path`` that is not this job's (or to start over).
    block_size : int, optional
        Target block edge in Y and X in pixels (whole chunks/shards; default 2048).
    halo : int, optional
        None (default): read enough context that each block equals the whole-image
        ``denoise()`` exactly; an int reads that many pixels each side instead.
    retries : int
        Extra attempts for a block task that raised.

    Returns
    -------
    dict
        ``output``, ``blocks_total``, ``blocks_done`` (this run), ``blocks_skipped``
        (done earlier), ``megapixels``, ``seconds``, ``mpx_per_s``, ``complete``,
        ``pyramid_levels``, ``intensity_ranges``, ``block_shape``, ``halo``,
        ``read_overhead`` and ``scheduler``.
    """
    from ..inference.axes import guess_axes, parse_axes

    options = InferenceOptions.build(options, **option_overrides)
    if options.planes != "xy":
        raise OptionError(
            "planes",
            f"{options.planes!r} is not available in the block-wise dask engine (its blocks are XY tiles);"
            " use planes='xy' here, or denoise the volume without a scheduler",
        )
    if options.tta:
        raise ValueError(
            "test-time augmentation (tta) is not available in the dask block engine: each block would need the"
            " whole image's transformed tiles; denoise without tta, or the whole image with denoise()"
        )
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    from ..inference.tiling import as_cancel_check

    should_stop = as_cancel_check(cancel)
    report_progress = _progress_caller(progress)
    source = open_input(input)
    output = Path(output_path).expanduser().resolve()
    _check_not_input(output, source)
    shape = source.shape
    if axes is None:
        axes = source.ome.axes if source.ome is not None and source.ome.axes else guess_axes(shape)
    layout = parse_axes(axes, shape)
    loaded, model_path, model_sha = _resolve_model(model)
    # a model that needs whole-plane statistics (IDF) gets one block per plane: still exact, distributed over planes
    plan = plan_blocks(
        shape,
        source.write_unit(),
        layout,
        options=options,
        halo=halo,
        block_size=block_size,
        whole_planes=loaded.family != "clip",
    )

    identity = {
        "version": JOB_VERSION,
        "input": source.description if source.is_zarr else f"dask array {source.array.name}",
        "input_content": _input_content(source),
        "shape": list(shape),
        "dtype": str(source.dtype),
        "axes": layout.axes,
        "model_sha256": model_sha,
        **{k: v for k, v in options.as_record().items() if k not in _PLACEMENT_OPTIONS},
        "halo": halo,
        "block_shape": list(plan.block_shape),
    }
    out_dtype = np.dtype(options.output_dtype) if options.output_dtype is not None else source.dtype
    fingerprint = _fingerprint(identity)
    state = JobState(output)
    job_record = _prepare_output(output, state, fingerprint, identity, overwrite)
    if job_record is not None and job_record.get("finished"):
        return _finished_report(output, job_record, plan)
    if job_record is None:
        groups, rgb = _intensity_groups(source, loaded, layout.axes, options)
        provenance = {"model": loaded.provenance(), "job": identity, "intensity_ranges": groups}
        try:
            target = create_output(source, output, _jsonable(provenance), dtype=out_dtype)
        except BaseException:
            remove_output(output)  # never leave a half-created store that a rerun would refuse
            raise
        state.write_job(
            _jsonable(
                {
                    "fingerprint": fingerprint,
                    "identity": identity,
                    "rgb": rgb,
                    "groups": groups,
                    "blocks_total": len(plan),
                }
            )
        )
    else:
        groups, rgb = job_record["groups"], job_record["rgb"]
        target = open_output(source, output)
        _check_resumable(target, source, out_dtype)

    job = BlockJob(
        output=target.level0,
        state_root=str(output),
        model_path=model_path,
        model_sha256=model_sha,
        axes=layout.axes,
        rgb=rgb,
        y_axis=layout.y,
        x_axis=layout.x,
        image_size=(shape[layout.y], shape[layout.x]),
        # every block runs on the whole image's tile plan with the ranges measured once here
        options=options.replace(
            intensity_range=tuple((g["low"], g["high"]) for g in groups), output_dtype=str(out_dtype)
        ),
        exact=halo is None,
        input=source.location,
    )
    return _run(job, plan, source, target, state, fingerprint, groups, retries, scheduler, should_stop, report_progress)


def _prepare_output(output: Path, state: JobState, fingerprint: str, identity: dict, overwrite: bool) -> dict | None:
    """Return the earlier job record to resume, or None after clearing the way for a new output."""
    if not output.exists():
        return None
    if overwrite:
        from ..formats.safety import is_clipdenoise_output

        empty_folder = output.is_dir() and not any(output.iterdir())
        if not empty_folder and not is_clipdenoise_output(output):
            raise FileExistsError(
                f"{output} exists and was not written by napari-clipdenoise; it is never replaced, not even"
                " with overwrite=True: remove it yourself or choose another output path"
            )
        logger.info("removing the earlier output %s (overwrite=True)", output)
        remove_output(output)
        return None
    record = state.read_job() if output.is_dir() else None
    if record is None:
        record = read_completion(output)
        if record is None:
            raise FileExistsError(
                f"{output} exists and is not a clipdenoise output; pass overwrite=True or choose another path"
            )
        record["finished"] = True
    if record.get("fingerprint") != fingerprint:
        earlier = record.get("identity", {})
        changed = sorted(k for k in set(earlier) | set(identity) if earlier.get(k) != identity.get(k))
        if "input_content" in changed and earlier.get("input_content") is not None:
            raise FileExistsError(
                f"the input changed since {output} was started (the sizes or times of its files differ), so the"
                " blocks already written would mix old and new data; pass overwrite=True to start over"
            )
        raise FileExistsError(
            f"{output} holds a different job (changed: {', '.join(changed) or 'format'}); pass overwrite=True to"
            " start over, or choose another output path"
        )
    return record


def _finished_report(output: Path, record: dict, plan: BlockPlan) -> dict:
    """The report of a rerun on an output whose job has already finished: nothing to do."""
    return {
        "output": str(output),
        "blocks_total": len(plan),
        "blocks_done": 0,
        "blocks_skipped": len(plan),
        "megapixels": 0.0,
        "seconds": 0.0,
        "mpx_per_s": 0.0,
        "complete": True,
        "pyramid_levels": 0,
        "intensity_ranges": record.get("intensity_ranges", []),
        "block_shape": list(plan.block_shape),
        "halo": "exact" if plan.halo is None else plan.halo,
        "read_overhead": plan.read_fraction(),
        "scheduler": "none (already finished)",
    }


def _check_resumable(target, source: InputSource, dtype: np.dtype) -> None:
    try:
        level0 = target.level0.open("r")
    except Exception as exc:
        raise FileExistsError(
            f"{target.root} has a job record but its array cannot be opened ({exc}); pass overwrite=True to start over"
        ) from exc
    if tuple(level0.shape) != source.shape or np.dtype(level0.dtype) != dtype:
        raise FileExistsError(
            f"{target.root} holds a {level0.shape} {level0.dtype} array, not the expected"
            f" {source.shape} {dtype}; pass overwrite=True to start over"
        )


def _intensity_groups(source: InputSource, model, axes: str, options: InferenceOptions) -> tuple[list[dict], bool]:
    """The intensity range of each channel group, measured once on the client like ``denoise()`` does."""
    from ..inference.pipeline import plan_denoise

    plan = plan_denoise(source.array, model, axes=axes, options=options)
    rgb = len(plan.groups) == 1 and len(plan.groups[0].channels) == 3
    return plan.intensity_ranges(), rgb


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def _run(
    job, plan: BlockPlan, source, target, state, fingerprint, groups, retries, scheduler, should_stop, report_progress
):
    import dask

    from ..inference.axes import parse_axes

    done_before = state.done_keys()
    blocks = [block for block in plan if block.key not in done_before]
    total, skipped = len(plan), len(plan) - len(blocks)
    channel_axis = parse_axes(job.axes, source.shape).channel
    channels = source.shape[channel_axis] if channel_axis is not None else 1
    counters = {"done": 0, "pixels": 0}
    start = time.perf_counter()

    def stats() -> dict:
        seconds = time.perf_counter() - start
        megapixels = counters["pixels"] / channels / 1e6
        return {
            "skipped": skipped,
            "blocks_done": counters["done"],
            "megapixels": megapixels,
            "seconds": seconds,
            "mpx_per_s": megapixels / seconds if seconds > 0 else 0.0,
        }

    def on_done(block, info) -> None:
        counters["done"] += 1
        counters["pixels"] += block.size
        report_progress(skipped + counters["done"], total, stats())

    def report(complete: bool, pyramid_levels: int) -> dict:
        now = stats()
        return {
            "output": str(target.root),
            "blocks_total": total,
            "blocks_done": counters["done"],
            "blocks_skipped": skipped,
            "megapixels": now["megapixels"],
            "seconds": now["seconds"],
            "mpx_per_s": now["mpx_per_s"],
            "complete": complete,
            "pyramid_levels": pyramid_levels,
            "intensity_ranges": groups,
            "block_shape": list(plan.block_shape),
            "halo": "exact" if plan.halo is None else plan.halo,
            "read_overhead": plan.read_fraction(),
            "scheduler": runner_description,
        }

    runner_description = "none"
    with _open_scheduler(scheduler, retries) as runner:
        runner_description = runner.description
        run_block_task = dask.delayed(run_block, pure=False)
        run_id = f"{fingerprint}-{os.getpid()}-{time.time_ns()}"
        cancel_token = runner.cancel_token(should_stop, f"clipdenoise-cancel-{run_id}")
        shared_job = dask.delayed(job, name=f"clipdenoise-job-{run_id}")  # one graph node, not one copy per task
        tasks = []
        for block in blocks:
            data = None if job.input is not None else source.array[block.read_slices()]
            name = f"clipdenoise-block-{block.key}-{run_id}"
            tasks.append((block, run_block_task(shared_job, block, data, cancel_token, dask_key_name=name)))
        report_progress(skipped, total, stats())
        try:
            runner.run(tasks, on_done, should_stop)
        except DenoiseCancelled as exc:
            exc.report = report(False, 0)
            raise
        levels = 0
        if target.levels and (counters["done"] or not state.pyramid_done(fingerprint)):
            state.clear_pyramid()
            levels = _rebuild_pyramid(target, runner)
            state.mark_pyramid(fingerprint, levels)
    mark_complete(target.root, fingerprint, total)
    return report(True, levels)


def _rebuild_pyramid(target, runner) -> int:
    """Recompute every pyramid level from the one above it (after level 0 is complete)."""
    import dask.array as da

    previous = target.level0
    for location in target.levels:
        above = previous.open("r")
        level = location.open("r+")
        unit = tuple(level.shards or level.chunks)
        lazy = downsample_level(da.from_zarr(above), tuple(level.shape), np.dtype(level.dtype))
        runner.compute(da.store(lazy.rechunk(unit), level, lock=False, compute=False))
        previous = location
    return len(target.levels)


__all__ = ["denoise_zarr"]
