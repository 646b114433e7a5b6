"""A small, offline demonstration of training + evaluation on scikit-image's bundled images.

``python -m napari_clipdenoise.training.demo --out runs/demo`` (defaults: 1200 iterations of 8 crops of
48 px, at most 15 minutes, one torch thread)

1. writes three disjoint folders of bundled images (train / val / test);
2. trains the ``gaussian15`` recipe with a RANDOM encoder (no CLIP weights offline),
   small crops and a short, time-bounded schedule on the CPU; the encoder's BatchNorm is
   kept in eval mode ("frozen"): with random weights the reference behaviour (batch
   statistics while training, running statistics at inference) leaves train and test
   features far apart after a few hundred steps;
3. evaluates the result against ``noisy`` and the classical baselines on the held-out
   images with the paper's protocol (Gaussian 15/25/50, spatial Gaussian 40-55, Poisson 2-3.5).

This is NOT the paper's model: random encoder instead of CLIP, 13 images instead of
CBSD432, 1200 small-batch iterations on a CPU instead of 300k at batch 16 on a GPU.
It shows that the pipeline runs end to end and produces loadable checkpoints and
tables, nothing more.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TRAIN_IMAGES = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
    "moon",
    "page",
    "microaneurysms",
    "text",
    "motorcycle_left",
)
VAL_IMAGES = ("coffee",)
TEST_IMAGES = ("chelsea", "camera", "coins", "cell")


def _load(name: str):
    import numpy as np
    import skimage.data

    if name == "motorcycle_left":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        from skimage.util import img_as_ubyte

        image = img_as_ubyte(image)
    return image


def write_image_sets(root: Path) -> dict[str, Path]:
    """Write the train/val/test folders of 8-bit PNGs (idempotent); return their paths."""
    import imageio.v3 as iio

    folders = {}
    for split, names in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES), ("test", TEST_IMAGES)):
        folder = root / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = folder / f"{name}.png"
            if not path.is_file():
                iio.imwrite(path, _load(name))
        folders[split] = folder
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_clipdenoise.training.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-time limit (default 15)")
    parser.add_argument("--iterations", type=int, default=1200, help="planned iterations (schedule length)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--skip-train", action="store_true", help="only evaluate an existing run")
    parser.add_argument(
        "--methods", nargs="*", default=None, help="evaluation methods (default: noisy, baselines, the model)"
    )
    args = parser.parse_args(argv)
    root = Path(args.out)
    folders = write_image_sets(root)
    checkpoint = root / "gaussian15.safetensors"
    if not args.skip_train:
        from .train import main as train_main

        code = train_main(
            [
                "gaussian15",
                "--data",
                str(folders["train"]),
                "--val-data",
                str(folders["val"]),
                "--out",
                str(root),
                "--random-encoder",
                "--encoder-bn",
                "frozen",
                "--threads",
                str(args.threads),
                "--iterations",
                str(args.iterations),
                "--batch-size",
                str(args.batch_size),
                "--crop-size",
                str(args.crop_size),
                "--max-minutes",
                str(args.minutes),
                "--val-every",
                "50",
                "--log-every",
                "10",
                "--checkpoint-every",
                "0",
                "--set",
                "schedule.scale_to_iterations=true",
                "--set",
                "output.val_max_size=256",
                "--set",
                "output.val_sigma=15",
            ]
        )
        if code != 0:
            return code
    from ..baselines import available_methods
    from .evaluate import main as evaluate_main

    methods = args.methods or ["noisy", *available_methods(), str(checkpoint)]
    code = evaluate_main(
        [
            "--sets",
            str(folders["test"]),
            "--methods",
            *methods,
            "--protocol",
            "reference",
            "--out",
            str(root / "eval"),
            "--threads",
            str(args.threads),
            "--no-progress",
        ]
    )
    if code == 0:
        results = json.loads((root / "eval" / "results.json").read_text())
        print(f"wrote {root / 'eval' / 'results.md'} and results.json ({len(results['results'])} rows)")
    return code


if __name__ == "__main__":
    sys.exit(main())
