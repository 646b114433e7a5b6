"""What ``planes="ortho"`` does on a 3D phantom with a clean reference: PSNR, slice-to-slice flicker, time.

A 3D Shepp-Logan-like volume (the ten ellipsoids of the modified 3D Shepp-Logan
phantom, values in [0, 1]) gets seeded Gaussian noise, then is denoised plane by
plane (``planes="xy"``) and with the XY, XZ and YZ passes averaged (``"ortho"``).
For each, against the clean volume:

* PSNR over the whole volume (data range 1);
* flicker, where the clean volume is locally constant: RMS of the error's step
  between neighbouring slices (along Z), and its ratio to the same step along X
  (1 for errors alike in every direction, as white noise; above 1 when slices are
  denoised independently and their leftover noise does not line up);
* seconds (wall time of ``denoise`` after a warm-up), and the ortho/xy time ratio.

The default model is the demonstration checkpoint ``/work/demo_run/gaussian15.safetensors``
(random encoder, trained 1,200 iterations on 13 small images): **not the paper's
model**, and the table says so. ::

    python benchmarks/ortho.py                            # 128^3, sigma 15/255, the demonstration model
    python benchmarks/ortho.py --size 64 --sigma 25 --json ortho.json
    python benchmarks/ortho.py --model net_g_latest.pth   # any checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # benchmarks/_machine.py (the scripts run from this folder)

DEMO_MODEL = Path("/work/demo_run/gaussian15.safetensors")
DEMO_LABEL = "demonstration model (random encoder), not the paper's model"

# modified 3D Shepp-Logan: value, semi-axes (a, b, c), centre (x, y, z), rotation about z in degrees
ELLIPSOIDS = (
    (1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0),
    (0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0),
)


def phantom(size: int) -> np.ndarray:
    """A ``size^3`` float32 volume (Z, Y, X) of the modified 3D Shepp-Logan phantom, values in [0, 1]."""
    axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    volume = np.zeros((size, size, size), np.float32)
    for value, a, b, c, x0, y0, z0, phi in ELLIPSOIDS:
        cos, sin = np.cos(np.radians(phi)), np.sin(np.radians(phi))
        dx, dy, dz = x - x0, y - y0, z - z0
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        volume[(u / a) ** 2 + (v / b) ** 2 + (dz / c) ** 2 <= 1.0] += value
    return np.clip(volume, 0.0, 1.0)


def psnr(clean: np.ndarray, test: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / np.mean((test.astype(np.float64) - clean) ** 2)))


def flat_mask(clean: np.ndarray) -> np.ndarray:
    """Voxels inside the object whose 3 x 3 x 3 neighbourhood is constant in the clean volume."""
    from scipy import ndimage

    return (ndimage.maximum_filter(clean, 3) == ndimage.minimum_filter(clean, 3)) & (clean > 0)


def flicker(clean: np.ndarray, test: np.ndarray, flat: np.ndarray) -> tuple[float, float]:
    """In flat regions: RMS of the error's step between slices (Z), and its ratio to the step along X.

    Where the clean volume is constant the error is what is left of the noise: a
    plane-by-plane denoiser leaves it smooth within a slice but independent from
    slice to slice (ratio above 1); white noise gives 1.
    """
    error = test.astype(np.float64) - clean
    pairs_z = flat[1:] & flat[:-1]
    pairs_x = flat[:, :, 1:] & flat[:, :, :-1]
    along_z = float(np.sqrt(np.mean(np.diff(error, axis=0)[pairs_z] ** 2)))
    along_x = float(np.sqrt(np.mean(np.diff(error, axis=2)[pairs_x] ** 2)))
    return along_z, along_z / along_x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="edge of the cubic volume (default: %(default)s)")
    parser.add_argument("--sigma", type=float, default=15.0, help="Gaussian noise sigma on the 0..255 scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=str(DEMO_MODEL), help="checkpoint or installed name")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    from napari_clipdenoise import denoise, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    demo = Path(args.model).expanduser().resolve() == DEMO_MODEL.resolve() or bool(model.metadata.get("random_encoder"))
    label = f"{model.name}: {DEMO_LABEL}" if demo else model.name
    clean = phantom(args.size)
    rng = np.random.default_rng(args.seed)
    noisy = (clean + rng.normal(0.0, args.sigma / 255.0, clean.shape)).astype(np.float32)
    options = {"axes": "ZYX", "intensity_range": (0.0, 1.0), "tile_size": args.tile_size,
               "precision": args.precision, "device": args.device}  # fmt: skip
    denoise(noisy[:2], model, **options)  # warm-up: prepared network, kernels
    rows = [{"planes": "noisy input", "psnr": psnr(clean, noisy), "seconds": 0.0}]
    flat = flat_mask(clean)
    rows[0]["flicker_z"], rows[0]["flicker_ratio"] = flicker(clean, noisy, flat)
    for planes in ("xy", "ortho"):
        started = time.perf_counter()
        result = denoise(noisy, model, planes=planes, **options)
        seconds = time.perf_counter() - started
        along_z, ratio = flicker(clean, result, flat)
        rows.append({"planes": planes, "psnr": psnr(clean, result), "flicker_z": along_z, "flicker_ratio": ratio,
                     "seconds": seconds})  # fmt: skip
    cost = rows[2]["seconds"] / rows[1]["seconds"]

    cpu = cpu_name()
    print(f"model: {label}")
    print(
        f"volume: {args.size}^3 modified 3D Shepp-Logan in [0, 1], Gaussian sigma {args.sigma:g}/255, seed {args.seed}"
    )
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads,"
          f" load {os.getloadavg()[0]:.2f}, precision {args.precision}, device {args.device}")  # fmt: skip
    print()
    print(f"flicker: in the {flat.mean() * 100:.0f}% of voxels where the clean volume is locally constant")
    print()
    print("| planes | PSNR (dB) | flicker along Z (RMS) | flicker ratio Z/X | seconds |")
    print("|---|---|---|---|---|")
    for row in rows:
        seconds = f"{row['seconds']:.1f}" if row["seconds"] else "-"
        print(
            f"| {row['planes']} | {row['psnr']:.2f} | {row['flicker_z']:.4f} | {row['flicker_ratio']:.2f} | {seconds} |"
        )
    print(f"\northo / xy time: {cost:.2f}x")
    if args.json:
        document = {"model": label, "size": args.size, "sigma": args.sigma, "seed": args.seed, "cpu": cpu,
                    "cores": os.cpu_count(), "rows": rows, "ortho_time_ratio": cost}  # fmt: skip
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
