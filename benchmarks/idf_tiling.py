"""IDF peer network: what independent tiles cost, and the exact tiled runner's time and memory.

Prints numbers (no JSON, not a test). Uses the bundled ``idf_g_15`` weights on scikit-image's
astronaut (512 x 512) with seeded Gaussian noise (sigma 25/255), and on a 1024 x 1536 image made by
mirroring it. Sections:

(a) independent tiles (the network run per 256 px tile with 32 px overlap, then the tile centres
    cropped, or linearly blended) against the whole-image output: max abs and PSNR on 0-255;
(b) time and peak RSS of the whole-image forward against the exact tiled runner (256/512 px tiles,
    recomputing or caching the logits), each in a fresh subprocess so the peak is its own;
(c) fp32 against bf16 and NCHW against channels_last (agreement with fp32 channels_last and speed),
    and IDF's speed against the project's CLIP network (random weights, timing only).

    python benchmarks/idf_tiling.py [--threads 1] [--quick]

One torch thread by default: on a 2-core machine shared with other work, two threads make every
small operator wait for a descheduled OpenMP worker (~4 ms a call), which swamps the tiled runner
(dozens of operators per tile) and makes timings meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # benchmarks/_machine.py (the scripts run from this folder)

ROOT = Path(__file__).resolve().parent.parent
SIGMA = 25 / 255


# --------------------------------------------------------------------------- images
def clean_images() -> dict[str, np.ndarray]:
    """3 x H x W float32 on [0, 1]: astronaut 512 x 512 and a mirrored 1024 x 1536."""
    from skimage import data

    small = data.astronaut().astype(np.float32) / 255.0
    row = np.concatenate([small, small[:, ::-1], small], axis=1)
    large = np.concatenate([row, row[::-1]], axis=0)
    return {"512x512": small.transpose(2, 0, 1).copy(), "1024x1536": large.transpose(2, 0, 1).copy()}


def noisy(clean: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, SIGMA, clean.shape).astype(np.float32), 0, 1)


def psnr255(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) * 255 - b.astype(np.float64) * 255) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    import torch

    cpu = cpu_name()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"CPU: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}, threads {torch.get_num_threads()}; "
        f"load average {load}"
    )


# --------------------------------------------------------------------------- (a) independent tiles
def _starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, n - tile, stride)) + [n - tile]
    return sorted(set(starts))


def _axis_weights(n: int, starts: list[int], tile: int, blend: bool) -> list[np.ndarray]:
    """Per tile, the weight of each of its pixels along one axis (crop: 0/1 ownership; blend: ramps)."""
    weights = []
    for k, start in enumerate(starts):
        end = min(start + tile, n)
        idx = np.arange(start, end)
        if blend:
            w = np.ones(end - start)
            if k > 0:
                ov = starts[k - 1] + tile - start
                w = np.minimum(w, (idx - start + 1) / (ov + 1))
            if k < len(starts) - 1:
                ov = end - starts[k + 1]
                w = np.minimum(w, (end - idx) / (ov + 1))
        else:
            lo = 0 if k == 0 else (start + starts[k - 1] + tile) // 2
            hi = n if k == len(starts) - 1 else (starts[k + 1] + end) // 2
            w = ((idx >= lo) & (idx < hi)).astype(np.float64)
        weights.append(w)
    return weights


def independent_tiles(network, plane: np.ndarray, tile: int = 256, overlap: int = 32, blend: bool = False):
    import torch

    _, h, w = plane.shape
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    wy, wx = _axis_weights(h, ys, tile, blend), _axis_weights(w, xs, tile, blend)
    acc = np.zeros(plane.shape, np.float64)
    norm = np.zeros((h, w), np.float64)
    with torch.inference_mode():
        for i, y0 in enumerate(ys):
            for j, x0 in enumerate(xs):
                part = plane[:, y0 : y0 + tile, x0 : x0 + tile]
                out = network(torch.from_numpy(np.ascontiguousarray(part))[None])[0].numpy()
                weight = np.outer(wy[i], wx[j])
                acc[:, y0 : y0 + tile, x0 : x0 + tile] += out * weight
                norm[y0 : y0 + tile, x0 : x0 + tile] += weight
    return (acc / norm).astype(np.float32), len(ys) * len(xs)


# --------------------------------------------------------------------------- (b) child process
def child(config: dict) -> None:
    import torch

    torch.set_num_threads(config["threads"])
    sys.path.insert(0, str(ROOT))
    from napari_clipdenoise.model import idf

    network = idf.load_bundled_idf()
    plane = noisy(clean_images()[config["image"]])
    before = rss_mb()
    walls, cpus = [], []
    for _ in range(config.get("repeats", 1)):
        start, cpu = time.perf_counter(), time.process_time()
        out = idf.denoise_plane(
            network,
            plane,
            tile_size=config["tile"],
            cache_logits=config.get("cache", False),
            precision=config.get("precision", "fp32"),
        )
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    peak = peak_rss_mb()
    np.save(config["out"], out)
    best = int(np.argmin(walls))
    print(
        json.dumps(
            {
                "seconds": walls[best],
                "cpu_seconds": cpus[best],
                "walls": walls,
                "rss_before_mb": before,
                "peak_rss_mb": peak,
            }
        )
    )


def run_child(config: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main
def timed(fn, repeats: int = 3):
    fn()  # warm-up
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="skip the 1024 x 1536 image")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from napari_clipdenoise.model import idf

    network = idf.load_bundled_idf()
    images = clean_images()
    names = ["512x512"] if args.quick else list(images)
    print(machine())
    print(f"IDF idf_g_15 (bundled), {network.iterations} iterations; input: astronaut + Gaussian sigma 25/255, seed 0")

    # (a) + (b)
    with tempfile.TemporaryDirectory() as tmp:
        whole = {}
        for name in names:
            clean = images[name]
            plane = noisy(clean)
            h, w = plane.shape[1:]
            out_path = str(Path(tmp) / f"{name}_whole.npy")
            repeats = 3 if h * w <= 512 * 512 else 2
            row = run_child({"image": name, "tile": None, "threads": args.threads, "out": out_path, "repeats": repeats})
            whole[name] = np.load(out_path)
            print(
                f"\n== {name} ({h * w / 1e6:.2f} Mpx): whole-image PSNR vs clean {psnr255(whole[name], clean):.2f} dB "
                f"(noisy {psnr255(plane, clean):.2f} dB)"
            )
            print("(a) independent tiles (256 px, 32 px overlap) vs whole image:")
            for blend in (False, True):
                start = time.perf_counter()
                tiled, count = independent_tiles(network, plane, 256, 32, blend=blend)
                seconds = time.perf_counter() - start
                diff = np.abs(tiled - whole[name]) * 255
                print(
                    f"    {'blend' if blend else 'crop '}: {count:3d} tiles  max abs {diff.max():6.2f}  "
                    f"mean abs {diff.mean():.3f}  >1 level {np.mean(diff > 1):.2%}  "
                    f"PSNR vs whole {psnr255(tiled, whole[name]):6.2f} dB  "
                    f"(vs clean {psnr255(tiled, clean):.2f} dB)  {seconds:6.1f} s"
                )
            print(
                f"(b) time (best of {repeats} runs; CPU time of that run) and peak RSS, a fresh process each "
                "(RSS before the run = torch + weights + input):"
            )
            state_mb = 2 * 3 * h * w * 4 / 2**20
            print(
                f"    whole image        : {row['seconds']:7.2f} s (cpu {row['cpu_seconds']:5.1f} s)  "
                f"peak RSS {row['peak_rss_mb']:7.0f} MB  "
                f"(+{row['peak_rss_mb'] - row['rss_before_mb']:6.0f} MB over before)"
            )
            for tile in (256, 512):
                if h <= tile and w <= tile:
                    continue
                for cache in (False, True):
                    out_path = str(Path(tmp) / f"{name}_{tile}_{cache}.npy")
                    row = run_child(
                        {
                            "image": name,
                            "tile": tile,
                            "cache": cache,
                            "threads": args.threads,
                            "out": out_path,
                            "repeats": repeats,
                        }
                    )
                    diff = np.abs(np.load(out_path) - whole[name]).max()
                    label = f"exact {tile} {'cached' if cache else 'recomp'}"
                    print(
                        f"    {label:19s}: {row['seconds']:7.2f} s (cpu {row['cpu_seconds']:5.1f} s)  "
                        f"peak RSS {row['peak_rss_mb']:7.0f} MB  "
                        f"(+{row['peak_rss_mb'] - row['rss_before_mb']:6.0f} MB over before)  "
                        f"max abs vs whole {diff:.1e}"
                    )
            print(f"    (state x + residual: {state_mb:.0f} MB; cached logits add {9 * h * w * 4 / 2**20:.0f} MB)")

    # (c) precision / memory format, and IDF against the CLIP network, in this process
    name = "512x512"
    plane = noisy(images[name])
    x = torch.from_numpy(plane)[None]
    print(f"\n== (c) fast paths on {name}, whole image, in one process (best of 3 after a warm-up)")
    results = {}
    for precision in ("fp32", "bf16"):
        for channels_last in (True, False):
            network.precision, network.channels_last = precision, channels_last
            with torch.inference_mode():
                seconds, y = timed(lambda: network(x)[0].numpy())
            results[(precision, channels_last)] = (seconds, y)
    network.precision, network.channels_last = "fp32", True
    reference = results[("fp32", True)][1]
    for (precision, channels_last), (seconds, y) in results.items():
        diff = np.abs(y - reference) * 255
        eight = np.abs((y * 255).astype(np.uint8).astype(int) - (reference * 255).astype(np.uint8).astype(int))
        print(
            f"    {precision} {'channels_last' if channels_last else 'NCHW         '}: {seconds:6.2f} s  "
            f"PSNR vs fp32/CL {psnr255(y, reference):7.2f} dB  max abs {diff.max():6.3f}  "
            f"uint8 within 1: {np.mean(eight <= 1):.4f}  PSNR vs clean {psnr255(y, images[name]):.2f} dB"
        )

    from napari_clipdenoise import denoise
    from napari_clipdenoise.model.registry import DenoisingModel
    from napari_clipdenoise.model.testing import random_network

    model = DenoisingModel(random_network(3), "random")
    image = np.ascontiguousarray(plane.transpose(1, 2, 0))
    clip_seconds, _ = timed(lambda: denoise(image, model, precision="fp32"))
    idf_seconds = results[("fp32", True)][0]
    print(
        f"    CLIP network (random weights) denoise(..., precision='fp32'): {clip_seconds:6.2f} s; "
        f"IDF fp32 whole image {idf_seconds:6.2f} s (IDF/CLIP {idf_seconds / clip_seconds:.2f})"
    )
    print(machine())


if __name__ == "__main__":
    main()
