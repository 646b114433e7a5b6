"""The dask block engine on a real LocalCluster (2 worker processes on loopback) and real zarr stores.

Every output is compared with the single-process ``denoise()`` of the whole
volume: the exact halo makes them identical, so equality is asserted to the bit.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import zarr

from napari_clipdenoise import denoise
from napari_clipdenoise.distributed import denoise_zarr
from napari_clipdenoise.errors import DenoiseCancelled

TILE, OVERLAP = 48, 16
SHAPE, CHUNKS = (4, 96, 96), (1, 48, 48)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:96, :96]
    clean = 800 + 600 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    planes = [clean + rng.normal(0, 120, clean.shape) + 50 * z for z in range(SHAPE[0])]
    return np.stack(planes).clip(0, 4000).astype(np.uint16)


@pytest.fixture(scope="module")
def reference(volume, gray_checkpoint):
    """The whole volume denoised in this process, with the core's own global intensity range."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return denoise(volume, gray_checkpoint, axes="ZYX", tile_size=TILE, overlap=OVERLAP, precision="fp32")
    finally:
        torch.set_num_threads(threads)


def make_input(path, volume, **options):
    zarr.create_array(str(path), data=volume, chunks=CHUNKS, **options)
    return path


def run(input_path, output_path, model, **options):
    options = {"axes": "ZYX", "tile_size": TILE, "overlap": OVERLAP, "precision": "fp32", "block_size": 48, **options}
    return denoise_zarr(str(input_path), str(output_path), str(model), **options)


def executing(dask_worker):
    return len(dask_worker.state.executing)


def markers(output_path):
    """Completion markers of an unfinished job: block key -> file modification time."""
    folder = output_path / ".clipdenoise" / "done"
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}


def chunk_times(output_path):
    """Chunk file -> modification time (zarr v3 default layout ``c/z/y/x``)."""
    files = (p for p in (output_path / "c").rglob("*") if p.is_file())
    return {str(p.relative_to(output_path)): p.stat().st_mtime_ns for p in files}


def finished(output_path):
    """A finished output is plain zarr: completion is recorded in its attributes, the job folder is gone."""
    attributes = dict(zarr.open(str(output_path), mode="r").attrs)
    return "complete" in attributes["napari_clipdenoise"] and not (output_path / ".clipdenoise").exists()


def test_cluster_output_equals_whole_volume_denoise(client, tmp_path, volume, reference, gray_checkpoint):
    source = make_input(tmp_path / "in.zarr", volume)
    seen = []
    report = run(
        source,
        tmp_path / "out.zarr",
        gray_checkpoint,
        scheduler=client,
        progress=lambda done, total, stats: seen.append((done, total, stats["mpx_per_s"])),
    )
    output = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert output.shape == volume.shape and output.chunks == CHUNKS and output.dtype == volume.dtype
    difference = np.abs(output[:].astype(np.int64) - reference.astype(np.int64)).max()
    print(
        f"max |cluster - whole denoise()| = {difference}; {report['blocks_done']} blocks,"
        f" {report['mpx_per_s']:.4f} Mpx/s, read overhead {report['read_overhead']:.2f}"
    )
    assert difference == 0
    assert report["blocks_total"] == 16 and report["blocks_done"] == 16 and report["blocks_skipped"] == 0
    assert report["complete"] and report["megapixels"] == pytest.approx(volume.size / 1e6)
    assert [d for d, _, _ in seen] == list(range(17)) and seen[-1][1] == 16 and seen[-1][2] > 0
    assert finished(tmp_path / "out.zarr")
    # the input is untouched, every worker loaded the model at most once and both took part
    np.testing.assert_array_equal(zarr.open_array(str(source), mode="r")[:], volume)
    from napari_clipdenoise.distributed.worker import model_loads

    loads = client.run(model_loads)
    assert sorted(loads.values()) == [1, 1], loads
    # a rerun of a finished job does nothing
    again = run(source, tmp_path / "out.zarr", gray_checkpoint, scheduler=client)
    assert again["blocks_done"] == 0 and again["blocks_skipped"] == 16


def test_cluster_uses_the_whole_images_balanced_tiles(client, tmp_path, volume, gray_checkpoint):
    """With 80 px tiles a 96 px axis is balanced to two 64 px tiles, the second flush with the edge (at 32,
    off the 48 px stride): blocks must use that grid and read every tile that touches them."""
    from napari_clipdenoise.inference.tile_grid import plan_tiles

    assert plan_tiles(96, 96, 80, OVERLAP).tile_height == 64
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = denoise(volume, gray_checkpoint, axes="ZYX", tile_size=80, overlap=OVERLAP, precision="fp32")
    finally:
        torch.set_num_threads(threads)
    source = make_input(tmp_path / "in.zarr", volume)
    run(source, tmp_path / "out.zarr", gray_checkpoint, scheduler=client, tile_size=80)
    output = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:]
    assert np.abs(output.astype(np.int64) - expected.astype(np.int64)).max() == 0


def test_sharded_output_has_no_lost_writes(client, tmp_path, volume, reference, gray_checkpoint):
    source = make_input(tmp_path / "sharded.zarr", volume, shards=(1, 96, 96))
    report = run(source, tmp_path / "out.zarr", gray_checkpoint, scheduler=client)
    output = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert output.shards == (1, 96, 96) and output.chunks == CHUNKS
    assert report["blocks_total"] == 4 and report["block_shape"] == [1, 96, 96]  # one block per shard
    for z in range(4):
        for y in (0, 48):
            for x in (0, 48):
                box = (z, slice(y, y + 48), slice(x, x + 48))
                np.testing.assert_array_equal(output[box], reference[box], err_msg=f"chunk {box}")


def test_interrupted_run_resumes_without_redoing_finished_blocks(client, tmp_path, volume, reference, gray_checkpoint):
    source = make_input(tmp_path / "in.zarr", volume)
    output_path = tmp_path / "out.zarr"
    progressed = []
    with pytest.raises(DenoiseCancelled) as caught:
        run(
            source,
            output_path,
            gray_checkpoint,
            scheduler=client,
            progress=lambda done, total: progressed.append(done),
            cancel=lambda: len(progressed) > 3,
        )
    assert not caught.value.report["complete"]
    deadline = time.monotonic() + 60
    while any(client.run(executing).values()) and time.monotonic() < deadline:
        time.sleep(0.1)  # blocks running when we cancelled stop at their next tile batch
    before = markers(output_path)
    assert 3 <= len(before) < 16
    written = chunk_times(output_path)  # one 48 x 48 chunk per block: c/z/y/x for block z.y.x
    assert {f"c/{key.replace('.', '/')}" for key in before} <= set(written)
    report = run(source, output_path, gray_checkpoint, scheduler=client)
    assert report["blocks_skipped"] == len(before) and report["blocks_done"] == 16 - len(before)
    after = chunk_times(output_path)
    for key in before:  # the finished blocks' chunks were not written again
        chunk = f"c/{key.replace('.', '/')}"
        assert after[chunk] == written[chunk], chunk
    assert finished(output_path)
    np.testing.assert_array_equal(zarr.open_array(str(output_path), mode="r")[:], reference)


def test_killed_worker_mid_run_still_gives_complete_identical_output(
    client, tmp_path, volume, reference, gray_checkpoint
):
    source = make_input(tmp_path / "in.zarr", volume)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed = []

    def kill_after_three(done, total):
        if done >= 3 and not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(done)

    report = run(source, tmp_path / "out.zarr", gray_checkpoint, scheduler=client, progress=kill_after_three)
    assert killed == [3] and report["complete"] and report["blocks_done"] == 16
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()  # the nanny replaced the killed process
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], reference)
    assert finished(tmp_path / "out.zarr")


def test_cli_scheduler_address_end_to_end(client, tmp_path, volume, reference, gray_checkpoint, capsys):
    """A model installed by name in this test's cache: the workers (started before the cache existed) get its path."""
    from napari_clipdenoise import install_model
    from napari_clipdenoise.cli import main

    install_model(gray_checkpoint, "gray-test")
    source = make_input(tmp_path / "stack.zarr", volume)
    argv = [
        "denoise",
        str(source),
        "--model",
        "gray-test",
        "--scheduler",
        client.scheduler.address,
        "--axes",
        "ZYX",
        "--tile-size",
        str(TILE),
        "--overlap",
        str(OVERLAP),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "-q",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    output = tmp_path / "stack_denoised.zarr"
    np.testing.assert_array_equal(zarr.open_array(str(output), mode="r")[:], reference)
    assert finished(output)
    written = chunk_times(output)
    assert len(written) == 16
    assert main(argv) == 0  # a rerun finds the job finished: nothing is written again
    assert chunk_times(output) == written
