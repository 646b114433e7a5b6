"""Noise2Void from scratch with careamics, for benchmarks/adapt.py (run with careamics' own interpreter).

careamics 0.3.5 lives in its own virtual environment (DESIGN.md: torch 2.13.0,
careamics==0.3.5 and torchvision==0.28.0 installed with --no-deps). This script
imports nothing from napari_clipdenoise; it reads the noisy stack from a .npy
file, trains N2V (careamics' defaults: UNet depth 2, 64 x 64 patches, 0.2 %
masked pixels, Adam) for a wall-clock budget, predicts, and writes the result
and a JSON record next to it.

    python _careamics_n2v.py NOISY.npy OUT.npy --axes SYX --minutes 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def import_torchvision() -> None:
    """The CPU torch wheel and the registry's torchvision disagree on two detection ops: define them first.

    ``import torchvision`` fails with ``operator torchvision::nms does not exist``;
    after dropping the half-imported modules and declaring placeholder schemas
    for ``nms`` and ``qnms``, it imports and its transforms work (DESIGN.md).
    """
    import torch

    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "FRAGMENT")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_TORCHVISION_LIBRARY"] = library  # keep the definitions alive
    import torchvision  # noqa: F401


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("noisy", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--axes", default="SYX", help="careamics axes of the array (SYX or SYXC)")
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import_torchvision()
    import careamics
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    noisy = np.load(args.noisy).astype(np.float32)
    channels = noisy.shape[-1] if args.axes.endswith("C") else None
    patches = noisy.shape[0] * (noisy.shape[1] // args.patch) * (noisy.shape[2] // args.patch)
    n_val = max(1, min(8, patches // 5))  # careamics' default 8, fewer for tiny check runs
    config = create_advanced_n2v_config(
        experiment_name="benchmark_n2v",
        data_type="array",
        axes=args.axes,
        patch_size=[args.patch, args.patch],
        batch_size=args.batch_size,
        num_epochs=100_000,  # the time budget ends the run
        n_channels=channels,
        n_val_patches=n_val,
        num_workers=0,
        trainer_params={"max_time": {"seconds": int(round(args.minutes * 60))}, "accelerator": "cpu"},
        seed=args.seed + 1,  # careamics wants a seed > 0
    )
    workdir = args.workdir or args.output.parent / "careamics_work"
    careamist = CAREamist(config, work_dir=workdir, enable_progress_bar=False)
    started, cpu_started = time.perf_counter(), time.process_time()
    careamist.train(train_data=noisy)
    train_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    predictions = careamist.predict(noisy, data_type="array", axes=args.axes)
    predict_s = time.perf_counter() - started
    if isinstance(predictions, tuple):  # (arrays, sources) in 0.3.5
        predictions = predictions[0]
    if isinstance(predictions, list):
        predictions = np.concatenate([np.asarray(p) for p in predictions]) if len(predictions) > 1 else predictions[0]
    result = np.asarray(predictions, dtype=np.float32)
    # careamics 0.3.5 returns SYXC arrays in the input's own axes order (checked on a 2 x 128 x 128 x 3
    # array); reading them as S x C x Y x X scrambled the RGB case. Accept both layouts, nothing else.
    channels_first = (noisy.shape[0], channels, *noisy.shape[1:3]) if channels else None
    if result.size != noisy.size:
        raise SystemExit(f"careamics returned {result.shape} for an input of {noisy.shape}")
    if channels and result.shape != noisy.shape and result.squeeze().shape == tuple(channels_first):
        result = np.moveaxis(result.reshape(channels_first), 1, -1)
    result = result.reshape(noisy.shape)
    np.save(args.output, result)
    record = {
        "careamics": careamics.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": int(careamist.trainer.global_step),
        "epochs": int(careamist.trainer.current_epoch),
        "train_s": train_s,
        "train_cpu_s": cpu_s,
        "predict_s": predict_s,
        "patch": args.patch,
        "batch_size": args.batch_size,
        "n_val_patches": n_val,
        "masked_pixel_percentage": config.algorithm_config.n2v_config.masked_pixel_percentage,
    }
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
