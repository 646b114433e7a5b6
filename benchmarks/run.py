"""Speed, memory and overhead benchmark for napari-clipdenoise; prints a table and writes JSON.

Every figure comes from a fresh subprocess (so peak RSS is that configuration's
own), as the median of several runs after one warm-up run. The network has
seeded random weights (``napari_clipdenoise.model.testing.random_network``): no
trained weights can be downloaded here, and speed and memory do not depend on
the weight values. Quality figures are only the agreement of fast paths with the
fp32 whole-image output, never denoising quality.

    python benchmarks/run.py                 # the full suite (~15-20 min on 2 busy cores)
    python benchmarks/run.py --quick         # a ~3 min subset
    python benchmarks/run.py --only throughput memory --json out.json
    python benchmarks/run.py --sizes 512 1024 --precisions fp32 bf16 --repeats 5

Sections: network (raw network time per tile size, precision and batch),
throughput (``denoise`` end to end, numpy uint8/uint16 in and out, with the
pipeline overhead: total time minus time inside the network), stack (a 3D uint16
stack), memory (peak RSS against image size), quality (fast paths against fp32
whole-image), classical (scikit-image NL-means/TV/wavelet and BM3D when the
optional ``bm3d`` package is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

FLOP_PER_PIXEL = 636e3  # METHOD.md section 6
SECTIONS = ("network", "throughput", "ratio", "stack", "memory", "quality", "classical")


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU model, cores, bf16/AMX support, library versions, load average, GPU (if any)."""
    info: dict = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
        info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni")))
    except OSError:
        info["cpu"] = platform.processor()
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    import numpy
    import torch

    from napari_clipdenoise.inference.cpu_fusion import fusion_allowed, fusion_supported
    from napari_clipdenoise.inference.device import cpu_has_native_bf16

    info.update(
        torch=torch.__version__,
        numpy=numpy.__version__,
        torch_threads=torch.get_num_threads(),
        native_bf16=cpu_has_native_bf16(),
        cuda=torch.cuda.is_available(),
        cpu_fusion=fusion_allowed() and fusion_supported(torch.float32),
    )
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------- children (run in a fresh process)


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _test_image(kind: str, height: int, width: int, planes: int = 0):
    """Noisy real-photograph content (skimage astronaut, tiled to size): ``rgb8`` or ``gray16``.

    Built in blocks of rows straight into the output dtype, so that making the
    image does not raise the process's peak RSS above the image itself.
    """
    import numpy as np
    from skimage import data

    rng = np.random.default_rng(0)
    base = data.astronaut().astype(np.float32) / 255.0
    if kind == "gray16":
        base = base.mean(axis=2)
    scale, dtype = (60000, np.uint16) if kind == "gray16" else (255, np.uint8)
    shape = (height, width) + base.shape[2:]
    image = np.empty(((planes,) if planes else ()) + shape, dtype)
    columns = np.arange(width) % base.shape[1]
    for plane in range(max(planes, 1)):
        target = image[plane] if planes else image
        for top in range(0, height, 256):
            rows = np.arange(top, min(top + 256, height)) % base.shape[0]
            block = np.roll(base[rows][:, columns], 7 * plane, axis=1)
            block += rng.normal(0, 25 / 255, block.shape).astype(np.float32)
            target[top : top + len(rows)] = np.clip(block, 0, 1) * scale + 0.5
    return image


class _NetworkTimer:
    """Wraps the prepared network's forward to add up the time spent inside it (synchronised on CUDA)."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def install(self):
        import torch

        try:
            from napari_clipdenoise.inference import prepare as device_module
        except ImportError:  # an older core: prepared networks lived in inference.device
            from napari_clipdenoise.inference import device as device_module

        if not hasattr(device_module, "InferenceNetwork"):
            return  # an older core without prepared networks (used for before/after comparisons)
        original = device_module.InferenceNetwork.forward
        timer = self

        def forward(self, x, geometry=None):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            y = original(self, x, geometry)
            if x.is_cuda:
                torch.cuda.synchronize()
            timer.seconds += time.perf_counter() - start
            timer.calls += 1
            return y

        device_module.InferenceNetwork.forward = forward


def child_network(spec: dict) -> dict:
    """Raw network time on one batch of random tiles, no pipeline around it."""
    import torch

    from napari_clipdenoise.inference.device import resolve_device
    from napari_clipdenoise.inference.prepare import prepare_network
    from napari_clipdenoise.inference.tiling import _forward
    from napari_clipdenoise.model.testing import random_network

    device = resolve_device(spec.get("device"))
    tile, batch, precision = spec["tile"], spec["batch"], spec["precision"]
    net = prepare_network(random_network(3), device, precision, True)
    x = torch.rand(batch, 3, tile, tile, generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    for _ in range(spec["repeats"] + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        _forward(net, x, device, precision, True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times = times[1:]  # the first run is a warm-up
    seconds = statistics.median(times)
    pixels = batch * tile * tile
    result = dict(
        seconds=seconds,
        runs=times,
        mpx_per_s=pixels / seconds / 1e6,
        gflop_per_s=pixels * FLOP_PER_PIXEL / seconds / 1e9,
        peak_rss_mb=_rss_mb(),
    )
    if device.type == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def child_denoise(spec: dict) -> dict:
    """``denoise`` end to end on a numpy image: time, network time inside it, peak RSS."""
    import torch

    from napari_clipdenoise import denoise
    from napari_clipdenoise.inference.tile_grid import plan_tiles
    from napari_clipdenoise.model.registry import DenoisingModel
    from napari_clipdenoise.model.testing import random_network

    kind = spec.get("kind", "rgb8")
    height, width = spec["height"], spec["width"]
    planes = spec.get("planes", 0)
    image = _test_image(kind, height, width, planes)
    channels = 1 if kind == "gray16" and spec.get("gray_model", True) else 3
    if spec.get("stub"):  # a 2-layer stand-in network: measures the pipeline's own memory quickly
        network = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.Conv2d(8, channels, 1)
        ).eval()
        network.in_channels = channels
    else:
        network = random_network(channels)
    model = DenoisingModel(network, "random")
    options = dict(
        tile_size=spec.get("tile", 1024),
        overlap=spec.get("overlap", 256),
        precision=spec.get("precision", "auto"),
        device=spec.get("device"),
    )
    if spec.get("batch"):
        options["batch_size"] = spec["batch"]
    timer = _NetworkTimer()
    if not spec.get("stub"):
        timer.install()
    rss_before = _rss_mb()
    times, network_times = [], []
    for _ in range(spec["repeats"] + (0 if spec.get("no_warmup") else 1)):
        timer.seconds = 0.0
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        denoise(image, model, **options)
        times.append(time.perf_counter() - start)
        network_times.append(timer.seconds)
    if not spec.get("no_warmup"):
        times, network_times = times[1:], network_times[1:]
    seconds, net_seconds = statistics.median(times), statistics.median(network_times)
    pixels = height * width * max(planes, 1)
    tile_plan = plan_tiles(height, width, options["tile_size"], options["overlap"])  # as denoise() plans it
    tiles = len(tile_plan) * max(planes, 1)
    tile_px = tile_plan.tile_height * tile_plan.tile_width
    result = dict(
        seconds=seconds,
        runs=times,
        mpx_per_s=pixels / seconds / 1e6,
        tiles=tiles,
        computed_px_ratio=tiles * tile_px / pixels,
        image_mb=image.nbytes / 2**20,
        rss_before_mb=rss_before,
        peak_rss_mb=_rss_mb(),
    )
    if net_seconds > 0:
        result.update(
            network_seconds=net_seconds,
            overhead_fraction=(seconds - net_seconds) / net_seconds,
            gflop_per_s=tiles * tile_px * FLOP_PER_PIXEL / net_seconds / 1e9,
        )
    if torch.cuda.is_available():
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def child_ratio(spec: dict) -> dict:
    """Default path against fp32, end to end, runs alternating in one process (fair under changing load)."""
    import numpy as np

    from napari_clipdenoise import denoise
    from napari_clipdenoise.inference.device import resolve_device, resolve_precision
    from napari_clipdenoise.model.registry import DenoisingModel
    from napari_clipdenoise.model.testing import random_network

    image = _test_image("rgb8", spec["size"], spec["size"])
    model = DenoisingModel(random_network(3), "random")
    default = resolve_precision("auto", resolve_device(spec.get("device")))
    times: dict = {"fp32": [], "auto": []}
    for run in range(spec["repeats"] + 1):
        for precision in ("fp32", "auto"):
            start = time.perf_counter()
            denoise(image, model, precision=precision, device=spec.get("device"))
            if run:  # the first round is a warm-up
                times[precision].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(times["fp32"], times["auto"], strict=True)]
    return dict(
        default_precision=default,
        fp32_runs=times["fp32"],
        auto_runs=times["auto"],
        ratios=ratios,
        median_ratio=float(np.median(ratios)),
        fp32_seconds=statistics.median(times["fp32"]),
        auto_seconds=statistics.median(times["auto"]),
    )


def child_quality(spec: dict) -> dict:
    """PSNR of each fast path against the fp32 whole-image output on a noisy real photograph.

    Each entry of ``spec["weights"]`` is ``"random:SEED"`` (seeded random weights) or the
    path of a trained checkpoint. Random weights are a stress test, not a model: how much
    rounding they amplify changes a lot from seed to seed.
    """
    import numpy as np
    from skimage import data

    from napari_clipdenoise import denoise
    from napari_clipdenoise.model.registry import DenoisingModel, load_model
    from napari_clipdenoise.model.testing import random_network

    clean = data.astronaut().astype(np.float32) / 255.0
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32), 0, 1)
    noisy8 = (noisy * 255).round().astype(np.uint8)

    def psnr(a, b, peak=1.0):
        mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
        return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)

    rows = []
    for weights in spec["weights"]:
        if weights.startswith("random:"):
            model = DenoisingModel(random_network(3, seed=int(weights.split(":", 1)[1])), "random")
        else:
            model = load_model(weights)
        reference = denoise(noisy, model, tile_size=None, precision="fp32")
        # tile 256 / overlap 128 is compared with fp32 at the same tiling, to isolate the precision
        # (random weights make tiles differ from the whole image far more than trained ones would)
        reference_tiled = denoise(noisy, model, tile_size=256, overlap=128, precision="fp32")
        for precision in spec["precisions"]:
            for tile, ref in ((None, reference), (256, reference_tiled)):
                out = denoise(noisy, model, tile_size=tile, overlap=128 if tile else 256, precision=precision)
                rows.append(
                    dict(
                        weights=weights,
                        input="float32 [0,1]",
                        precision=precision,
                        tile=tile,
                        psnr_db=psnr(out, ref),
                        max_abs=float(np.abs(out - ref).max()),
                        reference_range=[float(reference.min()), float(reference.max())],
                    )
                )
        reference8 = denoise(noisy8, model, tile_size=None, precision="fp32")
        out8 = denoise(noisy8, model)
        rows.append(
            dict(
                weights=weights,
                input="uint8",
                precision="auto",
                tile=1024,
                psnr_db=psnr(out8, reference8, 255.0),
                max_abs=float(np.abs(out8.astype(int) - reference8).max()),
            )
        )
    return dict(rows=rows)


def child_classical(spec: dict) -> dict:
    """Classical denoisers on the same 512 x 512 noisy grayscale photograph (seconds, median)."""
    import numpy as np
    from skimage import data, restoration

    clean = data.camera().astype(np.float32) / 255.0
    sigma = 15 / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, sigma, clean.shape).astype(np.float32), 0, 1)
    methods = {
        "skimage nl_means (fast)": lambda: restoration.denoise_nl_means(
            noisy, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True
        ),
        "skimage tv_chambolle": lambda: restoration.denoise_tv_chambolle(noisy, weight=0.1),
        "skimage wavelet (BayesShrink)": lambda: restoration.denoise_wavelet(noisy, rescale_sigma=True),
    }
    try:
        import bm3d

        methods["bm3d (pip bm3d)"] = lambda: bm3d.bm3d(noisy, sigma_psd=sigma)
    except ImportError:
        pass
    from napari_clipdenoise import denoise
    from napari_clipdenoise.model.registry import DenoisingModel
    from napari_clipdenoise.model.testing import random_network

    noisy8 = (noisy * 255).round().astype(np.uint8)
    model = DenoisingModel(random_network(3), "random RGB model (like gaussian15)")
    denoise(noisy8, model)  # warm-up
    methods["napari-clipdenoise default (random weights)"] = lambda: denoise(noisy8, model)
    rows = []
    for name, run in methods.items():
        times = []
        for _ in range(spec["repeats"] if "bm3d" not in name else max(1, spec["repeats"] - 1)):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        rows.append(dict(method=name, seconds=statistics.median(times), runs=times))
    return dict(rows=rows, image="skimage camera 512x512, gaussian sigma 15/255")


CHILDREN = {
    "network": child_network,
    "denoise": child_denoise,
    "quality": child_quality,
    "classical": child_classical,
    "ratio": child_ratio,
}


def run_child(kind: str, spec: dict, timeout: float = 1800) -> dict:
    """Run one measurement in a fresh Python process; returns its JSON (plus load average around it)."""
    load_before = os.getloadavg()
    command = [sys.executable, __file__, "--child", json.dumps({"kind_": kind, **spec})]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}",
            "spec": spec,
        }
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        spec=spec,
        wall_s=round(time.perf_counter() - start, 1),
        load_before=[round(v, 2) for v in load_before],
        load_after=[round(v, 2) for v in os.getloadavg()],
    )
    return result


# --------------------------------------------------------------------------- suite


def plan_suite(args) -> dict[str, list[tuple[str, dict]]]:
    r = args.repeats
    precisions = args.precisions
    suite: dict[str, list[tuple[str, dict]]] = {}
    suite["network"] = [
        ("network", dict(tile=t, batch=1, precision=p, repeats=r, device=args.device))
        for t in args.tiles
        for p in precisions
        if p != "fp16" or t == 512
    ]  # fp16 is slow on CPUs
    suite["network"] += [
        ("network", dict(tile=512, batch=b, precision="auto_", repeats=r, device=args.device))
        for b in args.batches
        if b != 1
    ]
    suite["throughput"] = []
    for size in args.sizes:
        big = size >= 2048
        chosen = (
            precisions
            if size <= args.all_precisions_up_to
            else (["fp32", "auto"] if size <= args.fp32_up_to and "fp32" in precisions else ["auto"])
        )
        for p in chosen:
            suite["throughput"].append(
                (
                    "denoise",
                    dict(
                        height=size,
                        width=size,
                        kind="rgb8",
                        precision=p,
                        repeats=1 if big else r,
                        no_warmup=big,
                        device=args.device,
                    ),
                )
            )
    suite["ratio"] = [
        ("ratio", dict(size=s, repeats=r, device=args.device)) for s in args.sizes if s <= args.fp32_up_to
    ]
    suite["stack"] = [
        (
            "denoise",
            dict(
                height=args.stack_size,
                width=args.stack_size,
                planes=args.stack_planes,
                kind="gray16",
                precision="auto",
                repeats=1,
                device=args.device,
            ),
        )
    ]
    suite["memory"] = [
        ("denoise", dict(height=s, width=s, kind="gray16", stub=True, repeats=1, no_warmup=True, device=args.device))
        for s in args.memory_sizes
    ]
    suite["memory"] += [
        (
            "denoise",
            dict(height=s, width=s, kind="gray16", precision="auto", repeats=1, no_warmup=True, device=args.device),
        )
        for s in args.memory_real_sizes
    ]
    weights = [f"random:{seed}" for seed in args.quality_seeds] + list(args.quality_checkpoints)
    suite["quality"] = [
        ("quality", dict(precisions=[p for p in precisions if p not in ("fp32",)] or ["auto"], weights=weights))
    ]
    suite["classical"] = [("classical", dict(repeats=r))]
    return {k: v for k, v in suite.items() if k in args.only}


def resolve_auto(spec: dict) -> dict:
    if spec.get("precision") == "auto_":
        spec = dict(spec, precision=_auto_precision(spec.get("device")))
    return spec


def _auto_precision(device) -> str:
    from napari_clipdenoise.inference.device import resolve_device, resolve_precision

    return resolve_precision("auto", resolve_device(device))


def print_table(section: str, rows: list[dict], header: bool = True) -> None:
    if header:
        print(f"\n## {section}")
    for row in rows:
        if "error" in row:
            print(f"  ERROR {row['spec']}: {row['error']}")
            continue
        spec = row["spec"]
        load = row.get("load_before", ["?"])[0]
        if section == "network":
            print(
                f"  tile {spec['tile']:>5} batch {spec['batch']} {spec['precision']:>5}: {row['seconds']:7.3f} s "
                f"{row['mpx_per_s']:6.3f} Mpx/s {row['gflop_per_s']:7.1f} GFLOP/s  RSS {row['peak_rss_mb']:6.0f} MB  load {load}"
            )
        elif section in ("throughput", "stack", "memory"):
            shape = f"{spec.get('planes') or 1}x{spec['height']}x{spec['width']} {spec.get('kind')}"
            text = (
                f"  {shape:>22} {spec.get('precision', 'auto'):>5}{' (stub net)' if spec.get('stub') else ''}: "
                f"{row['seconds']:8.2f} s {row['mpx_per_s']:7.3f} Mpx/s tiles {row['tiles']:>3}"
            )
            if "overhead_fraction" in row:
                text += f" net {row['network_seconds']:7.2f} s overhead {100 * row['overhead_fraction']:5.1f}%"
            text += f"  peak RSS {row['peak_rss_mb']:7.0f} MB (before {row['rss_before_mb']:.0f})  load {load}"
            print(text)
        elif section == "ratio":
            print(
                f"  {spec['size']}^2 rgb8, alternating: fp32 {row['fp32_seconds']:.2f} s, default "
                f"({row['default_precision']}) {row['auto_seconds']:.2f} s, ratio per pair "
                f"{', '.join(f'{v:.2f}' for v in row['ratios'])} (median {row['median_ratio']:.2f})  load {load}"
            )
        elif section == "quality":
            for q in row["rows"]:
                print(
                    f"  {Path(q.get('weights', 'random:0')).name:>22} {q['input']:>14} {q['precision']:>5} "
                    f"tile {str(q['tile']):>5}: PSNR vs fp32 "
                    f"{q['psnr_db']:6.2f} dB  max |diff| {q['max_abs']:.4f}"
                )
        elif section == "classical":
            for q in row["rows"]:
                print(f"  {q['method']:>30}: {q['seconds']:7.3f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes and 2 repeats (~3 min)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument(
        "--all-precisions-up-to", type=int, default=512, help="end-to-end runs at every precision up to this size"
    )
    parser.add_argument(
        "--fp32-up-to",
        type=int,
        default=1024,
        help="end-to-end runs at fp32 and 'auto' up to this size, 'auto' only above",
    )
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stack-planes", type=int, default=8)
    parser.add_argument(
        "--stack-size",
        type=int,
        default=512,
        help="plane edge of the uint16 stack (the H100 target uses --stack-planes 16 --stack-size 2048)",
    )
    parser.add_argument(
        "--memory-sizes",
        type=int,
        nargs="*",
        default=[2048, 4096, 8192],
        help="sizes for the pipeline-memory runs with a stand-in 2-layer network",
    )
    parser.add_argument(
        "--memory-real-sizes",
        type=int,
        nargs="*",
        default=[2048],
        help="sizes for peak RSS with the real network (4096 comes from the throughput section)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument(
        "--quality-seeds", type=int, nargs="*", default=[0, 1, 2], help="random-weight networks for the quality section"
    )
    parser.add_argument(
        "--quality-checkpoints",
        nargs="*",
        default=[],
        help="trained checkpoints (paths or registry names) for the quality section",
    )
    parser.add_argument(
        "--cpu-fusion",
        choices=["auto", "off"],
        default="auto",
        help="off: unfused CPU convolutions (CLIPDENOISE_CPU_FUSION=0), for before/after comparisons",
    )
    parser.add_argument("--json", default="benchmarks/results.json", help="where to write all results")
    args = parser.parse_args(argv)
    if args.cpu_fusion == "off":
        os.environ["CLIPDENOISE_CPU_FUSION"] = "0"  # the children inherit it
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec.pop("kind_")](spec)))
        return
    if args.quick:
        args.sizes, args.tiles, args.repeats = [512, 1024], [256, 512], 2
        args.memory_sizes, args.memory_real_sizes, args.stack_planes = [1024, 2048], [], 4
        args.all_precisions_up_to = args.fp32_up_to = 512
    results = {
        "machine": machine_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_at_start": os.getloadavg(),
        "weights": "seeded random (random_network); speed only",
        "flop_per_pixel": FLOP_PER_PIXEL,
        "args": vars(args),
        "sections": {},
    }
    print(json.dumps(results["machine"], indent=1))
    for section, jobs in plan_suite(args).items():
        rows = []
        print(f"\n## {section}", flush=True)
        for kind, spec in jobs:
            row = run_child(kind, resolve_auto(spec))
            rows.append(row)
            print_table(section, [row], header=False)
            sys.stdout.flush()
        results["sections"][section] = rows
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    results["load_at_end"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
