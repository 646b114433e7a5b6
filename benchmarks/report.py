"""Render the JSON written by benchmarks/run.py as Markdown tables (for BENCHMARKS.md).

    python benchmarks/report.py benchmarks/results_cpu.json [more.json ...]

Later files override earlier ones section by section (e.g. a rerun of one section
on a quieter machine); memory and network rows add up (same configuration: the later one wins).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PEAK_NOTE = "GFLOP/s = 636 kFLOP per computed pixel / network time"


def _load(paths: list[str]) -> dict:
    merged: dict = {"sections": {}}
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        for key, value in data.items():
            if key != "sections":
                merged.setdefault(key, value)
        for section, rows in data.get("sections", {}).items():
            if section in ("memory", "network") and section in merged["sections"]:  # rows add up by configuration
                keyed = {json.dumps(r.get("spec"), sort_keys=True): r for r in merged["sections"][section] + rows}
                merged["sections"][section] = list(keyed.values())
            else:
                merged["sections"][section] = rows
    return merged


def _load_text(row: dict) -> str:
    return f"{row.get('load_before', ['?'])[0]}"


def render(data: dict) -> str:
    out = []
    machine = data.get("machine", {})
    out.append(
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gb')} GB; "
        f"torch {machine.get('torch')}, numpy {machine.get('numpy')}; native bf16: {machine.get('native_bf16')}; "
        f"CUDA: {machine.get('cuda')}."
    )
    sections = data["sections"]
    if "network" in sections:
        out += [
            "",
            "### Network alone (random tiles, prepared network, channels-last)",
            "",
            "| tile | batch | precision | s / batch (median) | Mpx/s | GFLOP/s | peak RSS MB | load |",
            "|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for row in sections["network"]:
            if "error" in row:
                continue
            spec = row["spec"]
            out.append(
                f"| {spec['tile']} | {spec['batch']} | {spec['precision']} | {row['seconds']:.3f} | "
                f"{row['mpx_per_s']:.3f} | {row['gflop_per_s']:.0f} | {row['peak_rss_mb']:.0f} | {_load_text(row)} |"
            )
    for section in ("throughput", "stack"):
        if section not in sections:
            continue
        out += [
            "",
            "### End to end: `denoise`, numpy in and out"
            if section == "throughput"
            else "### 3D stack (uint16, 1-channel model, plane by plane)",
            "",
            "| image | precision | tiles | computed px / image px | s (median) | Mpx/s | network s | "
            "pipeline overhead | network GFLOP/s | peak RSS MB | runs | load |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in sections[section]:
            if "error" in row:
                continue
            spec = row["spec"]
            shape = f"{spec.get('planes') or 1} x {spec['height']} x {spec['width']} {spec.get('kind')}"
            out.append(
                f"| {shape} | {spec.get('precision', 'auto')} | {row['tiles']} | {row['computed_px_ratio']:.2f} | "
                f"{row['seconds']:.2f} | {row['mpx_per_s']:.3f} | {row.get('network_seconds', float('nan')):.2f} | "
                f"{100 * row.get('overhead_fraction', float('nan')):.1f}% | {row.get('gflop_per_s', float('nan')):.0f} | "
                f"{row['peak_rss_mb']:.0f} | {len(row['runs'])} | {_load_text(row)} |"
            )
    if "ratio" in sections:
        out += [
            "",
            "### Default path against fp32, runs alternating in one process",
            "",
            "| image | default precision | fp32 s | default s | ratio per pair | median ratio | load |",
            "|---|---|---:|---:|---|---:|---:|",
        ]
        for row in sections["ratio"]:
            if "error" in row:
                continue
            out.append(
                f"| {row['spec']['size']}^2 rgb8 | {row['default_precision']} | {row['fp32_seconds']:.2f} | "
                f"{row['auto_seconds']:.2f} | {', '.join(f'{v:.2f}' for v in row['ratios'])} | "
                f"{row['median_ratio']:.2f} | {_load_text(row)} |"
            )
    if "memory" in sections:
        out += [
            "",
            "### Peak memory (process RSS) against image size, default tiling",
            "",
            "| image | network | s | peak RSS MB | RSS before denoise MB | load |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in sections["memory"]:
            if "error" in row:
                continue
            spec = row["spec"]
            net = "2-layer stand-in" if spec.get("stub") else "CLIPDenoiser (1 ch)"
            out.append(
                f"| {spec['height']} x {spec['width']} uint16 | {net} | {row['seconds']:.1f} | "
                f"{row['peak_rss_mb']:.0f} | {row['rss_before_mb']:.0f} | {_load_text(row)} |"
            )
        stub = sorted(
            (r["spec"]["height"], r["peak_rss_mb"])
            for r in sections["memory"]
            if "error" not in r and r["spec"].get("stub")
        )
        pairs = list(zip(stub, stub[1:], strict=False)) + ([(stub[0], stub[-1])] if len(stub) > 2 else [])
        for (s0, m0), (s1, m1) in pairs:
            out.append(
                f"\nGrowth {s0}^2 -> {s1}^2 (stand-in network): "
                f"{(m1 - m0) * 2**20 / (s1 * s1 - s0 * s0):.1f} bytes per added pixel."
            )
    if "quality" in sections:
        out += [
            "",
            "### Agreement with the fp32 whole-image output (512 x 512 noisy astronaut)",
            "",
            "| weights | input | precision | tile | PSNR vs fp32 (dB) | max abs diff |",
            "|---|---|---|---|---:|---:|",
        ]
        for row in sections["quality"]:
            for q in row.get("rows", []):
                tile = "whole image" if q["tile"] is None else f"{q['tile']} (vs fp32 at the same tiling)"
                if q["input"] == "uint8":
                    tile = "default (1024/256)"
                weights = q.get("weights", "random:0")
                weights = (
                    f"random, seed {weights[7:]}" if weights.startswith("random:") else f"trained: {Path(weights).name}"
                )
                out.append(
                    f"| {weights} | {q['input']} | {q['precision']} | {tile} | {q['psnr_db']:.2f} | {q['max_abs']:.4f} |"
                )
    if "classical" in sections:
        out += [
            "",
            "### Classical denoisers on the same 512 x 512 photograph",
            "",
            "| method (512 x 512 camera, sigma 15) | s (median) |",
            "|---|---:|",
        ]
        for row in sections["classical"]:
            for q in row.get("rows", []):
                out.append(f"| {q['method']} | {q['seconds']:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(_load(sys.argv[1:] or ["benchmarks/results_cpu.json"])))
