"""Test-time augmentation (``denoise(..., tta=True)``): PSNR gain and time cost on a trained checkpoint.

For each image (scikit-image photographs that load offline), Gaussian noise of
``--sigma``/255 is added with a fixed seed; the noisy image is denoised without
and with TTA (the average of the 8 flips/rotations) and both results are
compared with the clean image (PSNR, data range 1). Times are the median of
``--repeats`` runs after one warm-up, in this process, with ``--threads`` torch
threads. Prints a table and, with ``--json``, writes the figures.

The default checkpoint is the demonstration model trained by
``python -m napari_clipdenoise.training.demo`` (``/work/demo_run/gaussian15.safetensors``):
a RANDOM encoder trained 1,200 iterations on 13 small images. Its figures say what
TTA does for that model, not for the paper's model.

    python benchmarks/tta.py                                  # 512 px crops of 4 images, ~10 min on 2 quiet cores
    python benchmarks/tta.py --size 96 --images camera --repeats 1   # a quick check that it runs
    python benchmarks/tta.py --checkpoint net_g_latest.pth --json tta.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # benchmarks/_machine.py (the scripts run from this folder)

DEMO_CHECKPOINT = Path("/work/demo_run/gaussian15.safetensors")
DEMO_LABEL = "demonstration model (random encoder), not the paper's model"
IMAGES = ("camera", "astronaut", "coins", "moon")


def clean_image(name: str, size: int) -> np.ndarray:
    """A centre crop of ``size`` px of a scikit-image sample, float32 in [0, 1] (grey or RGB)."""
    from skimage import data, img_as_float32

    image = img_as_float32(getattr(data, name)())
    height, width = image.shape[:2]
    size = min(size, height, width)
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def timed(function, repeats: int):
    function()  # warm-up (network preparation, allocator)
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def machine() -> dict:
    info = {"platform": platform.platform(), "cores": os.cpu_count()}
    info["cpu"] = cpu_name()
    info["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="trained checkpoint (default: %(default)s)"
    )
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    parser.add_argument("--size", type=int, default=512, help="centre crop edge in px (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=15.0, help="Gaussian noise sigma in /255 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", help="fp32 (default), bf16 or auto")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}; pass --checkpoint PATH (a trained model)")

    import torch

    from napari_clipdenoise import denoise, load_model
    from napari_clipdenoise.metrics import psnr

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    label = DEMO_LABEL if args.checkpoint.resolve() == DEMO_CHECKPOINT.resolve() else str(args.checkpoint)
    options = dict(intensity_range=(0.0, 1.0), output_dtype="float32", precision=args.precision, device="cpu")
    options["tile_size"] = args.tile_size
    rows = []
    for name in args.images:
        clean = clean_image(name, args.size)
        noise = np.random.default_rng(args.seed).normal(0.0, args.sigma / 255, clean.shape).astype(np.float32)
        noisy = clean + noise
        plain, plain_s = timed(lambda noisy=noisy: denoise(noisy, model, **options), args.repeats)
        tta, tta_s = timed(lambda noisy=noisy: denoise(noisy, model, tta=True, **options), args.repeats)
        row = {
            "image": name,
            "shape": list(clean.shape),
            "psnr_noisy": psnr(clean, np.clip(noisy, 0, 1)),
            "psnr_plain": psnr(clean, np.clip(plain, 0, 1)),
            "psnr_tta": psnr(clean, np.clip(tta, 0, 1)),
            "seconds_plain": plain_s,
            "seconds_tta": tta_s,
        }
        row["gain_db"] = row["psnr_tta"] - row["psnr_plain"]
        row["time_ratio"] = tta_s / plain_s
        rows.append(row)
        print(
            f"{name:<10} {'x'.join(map(str, clean.shape)):<12} noisy {row['psnr_noisy']:6.2f}  plain {row['psnr_plain']:6.2f}"
            f"  tta {row['psnr_tta']:6.2f}  gain {row['gain_db']:+.2f} dB   {plain_s:6.2f} s -> {tta_s:6.2f} s"
            f" (x{row['time_ratio']:.1f})",
            flush=True,
        )
    mean_gain = statistics.mean(r["gain_db"] for r in rows)
    mean_ratio = statistics.mean(r["time_ratio"] for r in rows)
    info = machine()
    print(f"mean gain {mean_gain:+.2f} dB, mean time x{mean_ratio:.1f}; model: {label}")
    print(f"sigma {args.sigma}/255, precision {args.precision}, {torch.get_num_threads()} thread(s), {info}")
    if args.json:
        document = {"model": label, "checkpoint": str(args.checkpoint), "sigma": args.sigma, "size": args.size}
        document.update(precision=args.precision, threads=torch.get_num_threads(), machine=info, rows=rows)
        document.update(mean_gain_db=mean_gain, mean_time_ratio=mean_ratio)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
