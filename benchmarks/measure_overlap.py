"""Measure tiled vs whole-image output for a range of overlaps (docs/tiling.md).

Runs the real architecture with seeded random weights (no trained weights can be
downloaded here) on a 1000 x 1500 RGB crop of skimage's astronaut + chelsea,
fp32 on the CPU, and prints max/mean absolute differences on the [0, 1] scale.

    python benchmarks/measure_overlap.py [--tiles 512 1024] [--overlaps 16 32 64 96 128 192 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from skimage import data, transform

from napari_clipdenoise import denoise
from napari_clipdenoise.model.network import CLIPDenoiser, init_random_weights
from napari_clipdenoise.model.registry import DenoisingModel


def test_image(height: int = 1000, width: int = 1500) -> np.ndarray:
    rgb = transform.resize(data.astronaut(), (height, width), anti_aliasing=True).astype(np.float32)
    noisy = rgb + np.random.default_rng(0).normal(0, 25 / 255, rgb.shape).astype(np.float32)
    return np.clip(noisy, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--overlaps", type=int, nargs="+", default=[16, 32, 64, 96, 128, 192, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=[1000, 1500], metavar=("H", "W"))
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = DenoisingModel(init_random_weights(CLIPDenoiser(), args.seed).eval(), "random")
    image = test_image(*args.size)
    start = time.perf_counter()
    whole = denoise(image, model, tile_size=None, precision="fp32")
    print(f"whole image {image.shape}: {time.perf_counter() - start:.1f} s, output std {whole.std():.3f}")
    rows = []
    print(f"{'tile':>5} {'overlap':>8} {'tiles':>6} {'max |diff|':>11} {'mean |diff|':>12} {'time s':>7}")
    for tile, overlap in [(t, o) for t in args.tiles for o in args.overlaps]:
        start = time.perf_counter()
        tiled = denoise(image, model, tile_size=tile, overlap=overlap, precision="fp32")
        elapsed = time.perf_counter() - start
        diff = np.abs(tiled - whole)
        from napari_clipdenoise.inference.tile_grid import count_tiles

        row = dict(
            tile=tile,
            overlap=overlap,
            tiles=count_tiles(*args.size, tile, overlap),
            max_abs=float(diff.max()),
            mean_abs=float(diff.mean()),
            seconds=round(elapsed, 2),
        )
        rows.append(row)
        print(
            f"{row['tile']:>5} {overlap:>8} {row['tiles']:>6} {row['max_abs']:>11.2e} {row['mean_abs']:>12.2e} {elapsed:>7.1f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows},
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
