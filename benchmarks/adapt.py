"""Does self-supervised adaptation help on noise the base model never saw? PSNR/SSIM per case and method.

Cases have clean references and pixel-independent noise (Noise2Void's assumption)
that the base model was NOT trained on (the demonstration model was trained on
Gaussian sigma 15/255):

``fluo_poisson_gauss``
    Procedural fluorescence-like stack (blobs and filaments on a dark background),
    strong Poisson-Gaussian noise: Poisson(peak * clean) / peak + N(0, read^2),
    peak 12 photons, read noise 0.03.
``natural_gauss50``
    Grayscale photographs that are not in the demonstration model's training set
    (camera, coins, clock, chelsea, cat, coffee; resized to the plane size, flips
    fill the stack), Gaussian sigma 50/255, not clipped.
``rgb_poisson_gauss``
    RGB photographs (chelsea, coffee, cat, colorwheel, resized; flips fill the
    stack), per-channel Poisson-Gaussian, peak 30, read noise 0.02.

Methods: ``noisy``; ``base`` (the base checkpoint as is); ``adapted``
(``napari_clipdenoise.adapt`` on the noisy stack itself for ``--minutes``, then
denoised); ``careamics N2V`` (Noise2Void trained from scratch by careamics on the
same noisy stack, same wall-clock budget and threads, in its own virtual
environment: ``--careamics-python``); ``BM3D`` where the ``bm3d`` package is
installed (sigma estimated from the noisy image; no variance-stabilising transform).

PSNR (data range 1) and SSIM (11x11 Gaussian window) are averaged over planes,
against the clean reference, outputs clipped to [0, 1]. The training columns give
wall-clock and process CPU minutes of the training loop only.

Run on a quiet machine (about 3 x (5 + 5) minutes plus BM3D):

    python benchmarks/adapt.py --base /work/demo_run/gaussian15.safetensors --minutes 5 --threads 2 \\
        --careamics-python /work/venv-careamics/bin/python --json benchmarks/results_adapt.json

A check that everything runs end to end (a minute or two, numbers meaningless):

    python benchmarks/adapt.py --size 128 --planes 2 --minutes 0.2 --cases natural_gauss50 \\
        --careamics-python /work/venv-careamics/bin/python --no-bm3d
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # benchmarks/_machine.py (the scripts run from this folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_BASE = "/work/demo_run/gaussian15.safetensors"
DEMO_LABEL = "demonstration model (random encoder), not the paper's model"
CASES = ("fluo_poisson_gauss", "natural_gauss50", "rgb_poisson_gauss")


# --------------------------------------------------------------------------- data
def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, (size, size) + image.shape[2:], anti_aliasing=True, preserve_range=True).astype(np.float32)


def _photographs(names, size: int, planes: int, gray: bool) -> np.ndarray:
    import skimage.color
    import skimage.data

    images = []
    for name in names:
        image = getattr(skimage.data, name)().astype(np.float32) / 255.0
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        if gray and image.ndim == 3:
            image = skimage.color.rgb2gray(image).astype(np.float32)
        images.append(_resize(image, size))
    variants = [lambda a: a, lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1]]
    stack = [variants[(i // len(images)) % 4](images[i % len(images)]) for i in range(planes)]
    return np.clip(np.stack(stack), 0, 1).astype(np.float32)


def fluorescence(size: int, planes: int, rng: np.random.Generator) -> np.ndarray:
    """Blobs (cells, vesicles) and filaments on a dark, slightly uneven background, in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    stack = []
    scale = size / 512
    for _ in range(planes):
        plane = 0.05 + 0.03 * np.sin(xx / (90 * scale) + rng.uniform(0, 6)) * np.cos(yy / (120 * scale))
        for _ in range(int(60 * scale**2) + 3):
            cy, cx = rng.uniform(0, size, 2)
            radius = rng.uniform(3, 14) * max(scale, 0.3)
            plane += rng.uniform(0.3, 0.9) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        lines = np.zeros((size, size), np.float32)
        for _ in range(int(25 * scale) + 2):
            y, x = rng.uniform(0, size, 2)
            angle = rng.uniform(0, np.pi)
            for _ in range(int(rng.uniform(60, 300) * scale) + 10):
                angle += rng.normal(0, 0.08)
                y, x = y + np.sin(angle), x + np.cos(angle)
                if 0 <= y < size and 0 <= x < size:
                    lines[int(y), int(x)] = 1.0
        plane += 0.6 * np.clip(gaussian_filter(lines, 1.0) * 4, 0, 1)
        stack.append(plane)
    stack = np.stack(stack)
    return np.clip(stack / np.percentile(stack, 99.9), 0, 1).astype(np.float32)


def make_case(name: str, size: int, planes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    if name == "fluo_poisson_gauss":
        clean = fluorescence(size, planes, rng)
        peak, read = 12.0, 0.03
        noisy = rng.poisson(clean * peak) / peak + rng.normal(0, read, clean.shape)
        noise = f"Poisson peak {peak:g} photons + Gaussian read noise {read:g}"
        axes = "ZYX"
    elif name == "natural_gauss50":
        clean = _photographs(("camera", "coins", "clock", "chelsea", "cat", "coffee"), size, planes, gray=True)
        noisy = clean + rng.normal(0, 50 / 255, clean.shape)
        noise = "Gaussian sigma 50/255 (base trained at 15/255), not clipped"
        axes = "ZYX"
    elif name == "rgb_poisson_gauss":
        clean = _photographs(("chelsea", "coffee", "cat", "colorwheel"), size, planes, gray=False)
        peak, read = 30.0, 0.02
        noisy = rng.poisson(clean * peak) / peak + rng.normal(0, read, clean.shape)
        noise = f"per-channel Poisson peak {peak:g} + Gaussian {read:g}"
        axes = "ZYXS"
    else:
        raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")
    return {"name": name, "clean": clean, "noisy": noisy.astype(np.float32), "noise": noise, "axes": axes}


# --------------------------------------------------------------------------- scoring
def scores(clean: np.ndarray, output: np.ndarray, rgb: bool) -> dict:
    from napari_clipdenoise.metrics import psnr, ssim

    output = np.clip(output, 0, 1)
    values = [
        (psnr(c, o, data_range=1.0), ssim(c, o, data_range=1.0, channel_axis=-1 if rgb else None))
        for c, o in zip(clean, output, strict=True)
    ]
    return {"psnr": float(np.mean([v[0] for v in values])), "ssim": float(np.mean([v[1] for v in values]))}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def denoise_with(model, noisy, axes):
    import napari_clipdenoise as nc

    started = time.perf_counter()
    out = nc.denoise(noisy, model, axes=axes, tile_size=None, precision="fp32", device="cpu")
    return out, time.perf_counter() - started


def run_careamics(python: str, noisy: np.ndarray, rgb: bool, minutes: float, threads: int, seed: int) -> dict:
    script = Path(__file__).with_name("_careamics_n2v.py")
    with tempfile.TemporaryDirectory(prefix="careamics-bench-") as folder:
        source, target = Path(folder) / "noisy.npy", Path(folder) / "n2v.npy"
        np.save(source, noisy)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        command = [python, str(script), str(source), str(target), "--axes", "SYXC" if rgb else "SYX"]
        command += ["--minutes", str(minutes), "--threads", str(threads), "--seed", str(seed)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"careamics failed ({result.returncode}):\n{result.stderr[-3000:]}")
        record = json.loads(target.with_suffix(".json").read_text())
        record["wall_s"] = time.perf_counter() - started
        record["output"] = np.load(target)
    return record


def run_bm3d(noisy: np.ndarray, rgb: bool) -> tuple[np.ndarray, float]:
    from napari_clipdenoise.baselines import classical_denoise
    from napari_clipdenoise.noise import estimate_noise_sigma

    started = time.perf_counter()
    planes = []
    for plane in noisy:
        sigma = estimate_noise_sigma(plane, channel_axis=-1 if rgb else None)
        planes.append(classical_denoise(plane, "bm3d", sigma=sigma, channel_axis=-1 if rgb else None))
    return np.stack(planes).astype(np.float32), time.perf_counter() - started


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEMO_BASE, help="base checkpoint (default: the demonstration model)")
    parser.add_argument("--base-label", help="how to describe the base model in the report")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--size", type=int, default=512, help="plane edge in px (default: 512)")
    parser.add_argument("--planes", type=int, default=8, help="planes per stack (default: 8)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per method (default: 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every method (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", type=int, default=None, help="adapt: decoder stages trained (default: adapt's)")
    parser.add_argument("--patience", type=int, default=None, help="adapt: early-stopping patience (default: adapt's)")
    parser.add_argument("--lr", type=float, default=None, help="adapt: learning rate (default: adapt's)")
    parser.add_argument("--batch-size", type=int, default=None, help="adapt: crops per step (default: adapt's)")
    parser.add_argument("--crop-size", type=int, default=None, help="adapt: crop edge (default: adapt's)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="adapt: training precision")
    parser.add_argument("--careamics-python", default=None, help="python of careamics' venv (default: skip N2V)")
    parser.add_argument("--no-bm3d", action="store_true", help="skip BM3D even where installed")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)

    import torch

    import napari_clipdenoise as nc
    from napari_clipdenoise.baselines import bm3d_available

    torch.set_num_threads(args.threads)
    base = nc.load_model(args.base)
    random_encoder = bool(base.metadata.get("random_encoder"))
    label = args.base_label or (DEMO_LABEL if random_encoder else base.name)
    print(f"base: {args.base} ({label}); {args.size} x {args.size} x {args.planes}, {args.minutes:g} min budget,"
          f" {args.threads} threads; load {load()}", flush=True)  # fmt: skip
    tuned = {"lr": args.lr, "batch_size": args.batch_size, "crop_size": args.crop_size, "decoder_stages": args.stages,
             "patience": args.patience}  # fmt: skip
    extra = {k: v for k, v in tuned.items() if v is not None}
    results = []
    for case_name in args.cases:
        case = make_case(case_name, args.size, args.planes, args.seed)
        clean, noisy, axes, rgb = case["clean"], case["noisy"], case["axes"], case["axes"].endswith("S")
        rows = [{"method": "noisy", **scores(clean, noisy, rgb)}]
        out, seconds = denoise_with(base, noisy, axes)
        rows.append({"method": "base", **scores(clean, out, rgb), "denoise_s": seconds, "load": load()})
        before = load()
        adapted = nc.adapt(
            noisy, base, axes=axes, max_minutes=args.minutes, threads=args.threads,
            precision=args.precision, seed=args.seed, **extra,
        )  # fmt: skip
        record = adapted.metadata["adaptation"]
        out, seconds = denoise_with(adapted, noisy, axes)
        rows.append(
            {
                "method": "adapted",
                **scores(clean, out, rgb),
                "train_min": record["elapsed_s"] / 60,
                "train_cpu_min": record["cpu_s"] / 60,
                "steps": record["steps"],
                "best_step": record["best_step"],
                "stopped": record["stopped"],
                "denoise_s": seconds,
                "load": before,
            }
        )
        if args.careamics_python:
            before = load()
            n2v = run_careamics(args.careamics_python, noisy, rgb, args.minutes, args.threads, args.seed)
            rows.append(
                {
                    "method": "careamics N2V (from scratch)",
                    **scores(clean, n2v.pop("output"), rgb),
                    "train_min": n2v["train_s"] / 60,
                    "train_cpu_min": n2v["train_cpu_s"] / 60,
                    "steps": n2v["steps"],
                    "careamics": n2v,
                    "load": before,
                }
            )
        if bm3d_available() and not args.no_bm3d:
            before = load()
            out, seconds = run_bm3d(noisy, rgb)
            rows.append(
                {"method": "BM3D (estimated sigma)", **scores(clean, out, rgb), "denoise_s": seconds, "load": before}
            )
        for row in rows:
            print(json.dumps({"case": case_name, **row}), flush=True)
        results.append({"case": case_name, "noise": case["noise"], "axes": axes, "rows": rows})
    print()
    print(markdown(results, args, label))
    if args.json:
        record = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
            "torch": torch.__version__,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "base_label": label,
            "results": results,
        }
        args.json.write_text(json.dumps(record, indent=2))
    return 0


def markdown(results: list[dict], args, label: str) -> str:
    lines = [
        f"Base: {label}. Stacks of {args.planes} x {args.size} x {args.size}, {args.threads} threads,"
        f" training budget {args.minutes:g} min per method.",
        "",
        "| case | noise | method | PSNR (dB) | SSIM | training min (CPU min) | steps | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in results:
        for row in case["rows"]:
            train = f"{row['train_min']:.1f} ({row['train_cpu_min']:.1f})" if "train_min" in row else ""
            lines.append(
                f"| {case['case']} | {case['noise']} | {row['method']} | {row['psnr']:.2f} | {row['ssim']:.4f} |"
                f" {train} | {row.get('steps', '')} | {row.get('load', '')} |"
            )
        by_method = {row["method"]: row for row in case["rows"]}
        if "adapted" in by_method:
            gain = by_method["adapted"]["psnr"] - by_method["base"]["psnr"]
            peer = next((r for m, r in by_method.items() if m.startswith("careamics")), None)
            versus = f", {by_method['adapted']['psnr'] - peer['psnr']:+.2f} dB vs careamics N2V" if peer else ""
            lines.append(f"|  |  | *adapted - base* | *{gain:+.2f}*{versus} |  |  |  |  |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
