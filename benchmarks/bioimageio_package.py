"""The shipped BioImage Model Zoo export end to end: default halo, all weight formats (prints numbers; not a test).

    .venv/bin/python benchmarks/bioimageio_package.py [--channels 3 1] [--threads 1]

Writes a package of seeded random weights of the real architecture with the
default halo (128 px, inputs from 272 px), runs ``bioimageio.core``'s model test
on every weight format it holds (pytorch_state_dict, torchscript, onnx), imports
the package back and checks the weights, and prints the status and the time of
each step. The test suite runs the same code with a 16 px halo to stay fast.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py (the scripts run from this folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[3], choices=[1, 3])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    from bioimageio.core import test_model

    from napari_clipdenoise.model.checkpoints import state_dict_sha256
    from napari_clipdenoise.model.export import export_model
    from napari_clipdenoise.model.loading import load_checkpoint
    from napari_clipdenoise.model.testing import write_project_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as scratch:
        for channels in args.channels:
            checkpoint = Path(scratch) / f"random_{channels}ch.safetensors"
            network = write_project_checkpoint(checkpoint, channels, seed=channels)
            package = Path(scratch) / f"random_{channels}ch.zip"
            start = time.perf_counter()
            exported = export_model(checkpoint, "bioimageio", package)
            print(
                f"{channels}-channel export: {time.perf_counter() - start:.1f} s, {package.stat().st_size / 2**20:.0f} MiB"
            )
            for note in exported.notes:
                print(f"  {note}")
            start = time.perf_counter()
            summary = test_model(str(package))
            print(
                f"  bioimageio.core test_model (all weight formats): {summary.status} in {time.perf_counter() - start:.1f} s"
            )
            for detail in summary.details:
                if detail.status != "passed":
                    print(f"    {detail.status}: {detail.name}: {[e.msg for e in detail.errors][:2]}")
            again = load_checkpoint(package)
            same = state_dict_sha256(again.network.state_dict()) == state_dict_sha256(network.state_dict())
            print(f"  imported back: same weights = {same}")


if __name__ == "__main__":
    main()
