"""Score denoisers on the paper's protocol: ``python -m napari_clipdenoise.training.evaluate``.

Examples
--------
The paper's synthetic-noise table (Gaussian 15/25/50, spatial Gaussian 40-55, Poisson 2-3.5)::

    python -m napari_clipdenoise.training.evaluate --sets CBSD68/ Kodak24/ --methods noisy nl_means gaussian15 --out eval/

Real camera noise (folders of noisy/clean pairs) and low-dose CT (.npy slices, or quarter-/full-dose DICOM
series and NIfTI volumes in HU, scored slice by slice)::

    python -m napari_clipdenoise.training.evaluate --mode real --sets SIDD_val/ --methods noisy srgb
    python -m napari_clipdenoise.training.evaluate --mode ct --sets mayo_1mm/ --ct-include L506 --methods noisy ldct --ct-max-hu 3096

Methods are ``noisy`` (the clamped noisy input: the baseline row), the classical
baselines of :mod:`napari_clipdenoise.baselines` (``nl_means``, ``tv``, ``wavelet``,
``bm3d`` when installed), checkpoint files and installed registry names.

Protocols
---------
``reference`` (default)
    Exactly the authors' test scripts: clean images read as 8-bit RGB / 255 (float32);
    NumPy's legacy global seed reset to 0 before every image and noise level, then the
    reference synthesis (:func:`napari_clipdenoise.noise.reference_noisy`); the network
    runs on the whole image reflect-padded bottom/right to a multiple of 32, cropped back
    and clamped to [0, 1] (:func:`reference_forward`, fp32, the network as loaded); PSNR/SSIM of :mod:`napari_clipdenoise.metrics`
    (``reference_psnr``/``reference_ssim``; ``real_noise_metrics`` in real mode;
    ``ct_psnr``/``ct_ssim`` in CT mode).
``tiled``
    The same inputs and metrics, but the network runs through the project's tiled
    inference (``--tile-size``, ``--overlap``, ``--precision``): what the plugin and
    ``clipdenoise`` do on large images.

Noise kinds beyond the paper's grid (``speckle``, ``salt_pepper``, ``poisson_peak``,
``gaussian``, ``spatial_gaussian``) use :func:`napari_clipdenoise.noise.add_noise` with
``numpy.random.default_rng(0)`` per image.

Outputs: ``results.md`` (one table per noise kind: rows methods, columns set x level,
cells PSNR/SSIM, best PSNR in bold) and ``results.json`` (per-image and mean PSNR/SSIM
for every method, set, noise and level).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..inference.options import DEFAULT_TILE_SIZE, InferenceOptions
from .data import IMAGE_SUFFIXES, DataError

PROTOCOLS = ("reference", "tiled")
MODES = ("synthetic", "real", "ct")
CLEAN_SUBFOLDERS = ("clean", "gt", "GT", "target", "mean")
NOISY_SUBFOLDERS = ("noisy", "input", "lq", "real")
#: CT mode also pairs these subfolders (Mayo-style quarter-/full-dose folders).
CT_NOISY_SUBFOLDERS = ("quarter_dose", "quarter", "low_dose", "quarter_1mm", "quarter_3mm")
CT_CLEAN_SUBFOLDERS = ("full_dose", "full", "normal_dose", "full_1mm", "full_3mm")
#: CT mode pairs items in one folder by these name tags (noisy, clean).
CT_TAGS = (("input", "target"), ("quarter", "full"))


class EvaluationError(ValueError):
    """Bad sets, methods or options (the message says what to change)."""


# ------------------------------------------------------------------ noise grid
def default_noise_grid() -> list[tuple[str, list[float]]]:
    from ..noise import REFERENCE_KINDS, REFERENCE_LEVELS

    return [(kind, [float(v) for v in REFERENCE_LEVELS[kind]]) for kind in REFERENCE_KINDS]


def parse_noise_specs(items: list[str] | None) -> list[tuple[str, list[float]]]:
    """``["default"]`` or ``["gauss:15,25", "speckle:0.1"]`` -> ``[(kind, [levels])]``."""
    from ..noise import NOISE_MODELS, REFERENCE_KINDS

    if not items or items == ["default"]:
        return default_noise_grid()
    known = list(REFERENCE_KINDS) + [k for k in NOISE_MODELS if k not in REFERENCE_KINDS]
    grid: list[tuple[str, list[float]]] = []
    for item in items:
        if item == "default":
            grid += default_noise_grid()
            continue
        if ":" not in item:
            raise EvaluationError(f"--noise expects KIND:LEVEL[,LEVEL...] (e.g. gauss:15,25), got {item!r}")
        kind, text = item.split(":", 1)
        if kind not in known:
            raise EvaluationError(f"unknown noise kind {kind!r}; choose from {', '.join(known)}")
        try:
            levels = [float(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise EvaluationError(f"noise levels must be numbers, got {text!r} in {item!r}") from exc
        if not levels:
            raise EvaluationError(f"no levels given in {item!r}")
        grid.append((kind, levels))
    return grid


def synthesize(clean01: np.ndarray, kind: str, level: float) -> np.ndarray:
    """The noisy input of one image.

    The reference synthesis after ``np.random.seed(0)`` for the paper's kinds,
    ``add_noise(..., rng=default_rng(0))`` for the others.
    """
    from ..noise import REFERENCE_KINDS, add_noise, reference_noisy

    if kind in REFERENCE_KINDS:
        np.random.seed(0)  # the reference resets the legacy global seed before every image
        return reference_noisy(clean01, kind, level)
    return add_noise(clean01, kind, level, rng=np.random.default_rng(0))


# ------------------------------------------------------------------ reading sets
def read_rgb8(path: Path) -> np.ndarray:
    """An 8-bit image as ``H x W x 3`` uint8 (grayscale replicated, alpha dropped), as OpenCV reads it."""
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path))
    except Exception as exc:
        raise DataError(f"could not read image {path}: {exc}") from exc
    if image.dtype != np.uint8:
        raise DataError(
            f"{path}: the paper's protocol reads 8-bit images, got {image.dtype}; convert the test set to 8 bit"
        )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise DataError(f"{path}: expected a 2D grayscale or RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _image_files(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
    )


def synthetic_items(folder: Path) -> list[tuple[str, Path]]:
    files = _image_files(folder)
    if not files:
        raise EvaluationError(f"test set {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [(p.name, p) for p in files]


def _subfolder(folder: Path, names) -> Path | None:
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    return None


def paired_items(
    folder: Path, suffixes=IMAGE_SUFFIXES, input_tag: str = "real", target_tag: str = "mean", include: str = ""
) -> list[tuple[str, Path, Path]]:
    """``[(name, noisy, clean)]`` pairs of a real-noise set.

    Subfolders noisy/ + clean/ matched by stem, or files tagged ``*{input_tag}*`` /
    ``*{target_tag}*`` in one folder, paired in sorted order (as the reference).
    """
    noisy_dir, clean_dir = _subfolder(folder, NOISY_SUBFOLDERS), _subfolder(folder, CLEAN_SUBFOLDERS)
    if noisy_dir is not None and clean_dir is not None:
        clean_by_stem = {p.stem: p for p in _image_files(clean_dir, suffixes)}
        pairs = []
        for noisy in _image_files(noisy_dir, suffixes):
            if include and include not in noisy.name:
                continue
            clean = clean_by_stem.get(noisy.stem)
            if clean is None:
                raise EvaluationError(f"{noisy} has no clean image with the same name in {clean_dir}")
            pairs.append((noisy.name, noisy, clean))
    else:
        files = [p for p in _image_files(folder, suffixes) if not include or include in p.name]
        inputs = [p for p in files if input_tag in p.name]
        targets = [p for p in files if target_tag in p.name]
        if len(inputs) != len(targets):
            raise EvaluationError(
                f"{folder}: {len(inputs)} noisy files (*{input_tag}*) but {len(targets)} clean files (*{target_tag}*)"
            )
        pairs = [(n.name, n, c) for n, c in zip(inputs, targets, strict=True)]
    if not pairs:
        raise EvaluationError(
            f"no noisy/clean pairs in {folder}: use subfolders noisy/ and clean/ (same file names) or files named"
            f" *{input_tag}* and *{target_tag}*"
        )
    return pairs


def ct_items(folder: Path, include: str = "") -> list[tuple[str, Path, Path]]:
    """``[(name, noisy, clean)]`` CT pairs: ``.npy`` slices, NIfTI volumes, DICOM files or series folders.

    Subfolders noisy/ + clean/ (or quarter_dose/ + full_dose/, quarter_1mm/ + full_1mm/...)
    matched by name without extension; or, in one folder, items tagged ``*input*`` /
    ``*target*`` (or ``*quarter*`` / ``*full*``), paired in sorted order.
    """
    from .data import ct_item_name, is_ct_item

    def listing(where: Path) -> list[Path]:
        items = sorted(p for p in where.iterdir() if is_ct_item(p))
        return [p for p in items if not include or include in p.name]

    noisy_dir = _subfolder(folder, NOISY_SUBFOLDERS + CT_NOISY_SUBFOLDERS)
    clean_dir = _subfolder(folder, CLEAN_SUBFOLDERS + CT_CLEAN_SUBFOLDERS)
    if noisy_dir is not None and clean_dir is not None:
        clean_by_name = {ct_item_name(p): p for p in listing(clean_dir)}
        pairs = []
        for noisy in listing(noisy_dir):
            clean = clean_by_name.get(ct_item_name(noisy))
            if clean is None:
                raise EvaluationError(f"{noisy} has no full-dose item with the same name in {clean_dir}")
            pairs.append((noisy.name, noisy, clean))
    else:
        items = listing(folder)
        pairs = []
        for noisy_tag, clean_tag in CT_TAGS:
            inputs = [p for p in items if noisy_tag in p.name]
            targets = [p for p in items if clean_tag in p.name]
            if not inputs and not targets:
                continue
            if len(inputs) != len(targets):
                raise EvaluationError(
                    f"{folder}: {len(inputs)} low-dose items (*{noisy_tag}*) but {len(targets)} full-dose items"
                    f" (*{clean_tag}*)"
                )
            pairs = [(n.name, n, c) for n, c in zip(inputs, targets, strict=True)]
            break
    if not pairs:
        raise EvaluationError(
            f"no low-dose/full-dose pairs in {folder}: use subfolders noisy/ and clean/ (or quarter_dose/ and"
            " full_dose/) with the same names, or items named *input* and *target* (.npy slices, .nii/.nii.gz"
            " volumes, DICOM files or series folders)"
        )
    return pairs


def read_ct_pair(noisy_path: Path, clean_path: Path, min_hu: float, max_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """Both items as normalised ``Z x Y x X`` volumes of one shape."""
    from .data import read_ct_volume

    noisy = read_ct_volume(noisy_path, min_hu=min_hu, max_hu=max_hu)
    clean = read_ct_volume(clean_path, min_hu=min_hu, max_hu=max_hu)
    if noisy.shape != clean.shape:
        raise EvaluationError(f"{noisy_path} ({noisy.shape}) and {clean_path} ({clean.shape}) differ in size")
    return noisy, clean


# ------------------------------------------------------------------ methods
@dataclass
class Method:
    """One row of the table."""

    label: str
    kind: str  # "noisy", "classical" or "model"
    spec: str
    model: object = None
    info: dict = field(default_factory=dict)


def resolve_methods(specs: list[str], device=None) -> list[Method]:
    from ..baselines import CLASSICAL_METHODS, available_methods
    from ..model.registry import load_model

    methods, labels = [], set()
    classical = available_methods()
    for spec in specs:
        if spec == "noisy":
            method = Method("noisy", "noisy", spec, info={"description": "the noisy input, clamped to [0, 1]"})
        elif spec in classical:
            method = Method(spec, "classical", spec, info={"description": CLASSICAL_METHODS.get(spec, spec)})
        elif spec in ("bm3d",):
            raise EvaluationError("bm3d is not installed: pip install bm3d (non-commercial licence), or drop it")
        else:
            try:
                model = load_model(spec, device=None)
            except FileNotFoundError as exc:
                raise EvaluationError(
                    f"method {spec!r} is not 'noisy', a classical method ({', '.join(classical)}), a checkpoint file"
                    f" or an installed model: {exc}"
                ) from exc
            label = str(model.metadata.get("name") or model.name)
            method = Method(label, "model", spec, model=model, info=model.provenance())
        base, n = method.label, 2
        while method.label in labels:
            method.label = f"{base} ({n})"
            n += 1
        labels.add(method.label)
        methods.append(method)
    if not methods:
        raise EvaluationError("give at least one method (--methods noisy ...)")
    return methods


@dataclass
class InferenceSettings:
    """The protocol and, for the ``tiled`` one, the core's inference options (fp32 unless asked otherwise)."""

    protocol: str = "reference"
    options: InferenceOptions = field(default_factory=lambda: InferenceOptions(precision="fp32"))
    oracle_sigma: bool = False

    @property
    def device(self) -> str:
        return self.options.device


def reference_forward(network, noisy: np.ndarray, device=None) -> np.ndarray:
    """The reference's inference: whole image, reflect pad bottom/right to a multiple of 32, crop (IDF: no pad).

    ``noisy`` is ``H x W x C`` (C = the network's channels) or ``H x W``; returns float32
    of the same shape, not clamped. The network runs as it is (fp32, contiguous NCHW,
    BatchNorm not folded), so the output is the reference's up to floating-point
    summation order.
    """
    import torch

    from ..inference.device import resolve_device

    device = resolve_device(device)
    x = np.ascontiguousarray(noisy, dtype=np.float32)
    planar = x.transpose(2, 0, 1) if x.ndim == 3 else x[None]
    channels, height, width = planar.shape
    replicate = channels == 1 and network.in_channels == 3
    if replicate:  # a grayscale image through an RGB model: copy to 3 channels, average the outputs
        planar = np.repeat(planar, 3, axis=0)
    elif channels != network.in_channels:
        raise EvaluationError(f"a {channels}-channel image cannot go through a {network.in_channels}-channel model")
    # the CLIP reference pads to a multiple of 32; IDF's authors run the whole image as it is (its
    # normalisation uses whole-image statistics, which padding would change)
    multiple = 32 if getattr(network, "family", "clip") == "clip" else 1
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    padded = np.pad(planar, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")  # = torch F.pad 'reflect'
    network = network.eval().to(device)
    with torch.no_grad():
        y = network(torch.from_numpy(np.ascontiguousarray(padded))[None].to(device))
    y = y[0, :, :height, :width].float().cpu().numpy()
    if replicate:
        y = y.mean(axis=0, keepdims=True)
    return y.transpose(1, 2, 0) if x.ndim == 3 else y[0]


def run_model(model, noisy: np.ndarray, settings: InferenceSettings, axes: str) -> np.ndarray:
    """Network output (float32, not clamped) for a noisy image on the [0, 1] scale.

    ``reference``: :func:`reference_forward` (not ``napari_clipdenoise.denoise``, whose
    inference-time optimisations such as folding BatchNorm into the convolutions change
    the last bits of the output). ``tiled``: ``denoise`` with the project's tiling and
    the given tile size, overlap and precision, intensity range fixed to (0, 1).
    """
    from ..inference.pipeline import denoise

    if settings.protocol == "reference":
        return reference_forward(model.network, noisy, settings.device)
    x = np.ascontiguousarray(noisy, dtype=np.float32)
    options = settings.options.replace(intensity_range=(0.0, 1.0), output_dtype="float32")
    return denoise(x, model, axes=axes, rgb=True if axes == "YXC" else None, options=options)


def oracle_sigma(kind: str, level: float) -> float | None:
    """The known noise std on the [0, 1] scale, for the Gaussian kinds (else None: estimated)."""
    if kind in ("gauss", "gaussian"):
        return level / 255.0
    if kind in ("spatial_gauss", "spatial_gaussian"):
        return level / 255.0 / 3.0  # a 3x3 box average divides the std by 3
    return None


def apply_method(
    method: Method,
    noisy: np.ndarray,
    settings: InferenceSettings,
    *,
    kind: str = "",
    level: float = 0.0,
    clamp: bool = True,
) -> np.ndarray:
    """Denoised float image on the [0, 1] scale (clamped unless ``clamp`` is False, as in CT mode)."""
    from ..baselines import classical_denoise

    x = np.asarray(noisy, dtype=np.float32)
    if method.kind == "noisy":
        out = x.copy()
    elif method.kind == "classical":
        sigma = oracle_sigma(kind, level) if settings.oracle_sigma else None
        out = classical_denoise(x, method.spec, sigma=sigma, channel_axis=-1 if x.ndim == 3 else None)
    else:
        out = run_model(method.model, x, settings, "YXC" if x.ndim == 3 else "YX")
    out = np.asarray(out, dtype=np.float32)
    return np.clip(out, 0.0, 1.0) if clamp else out


# ------------------------------------------------------------------ evaluation
def _finite_or_none(value: float):
    return None if value is None or not math.isfinite(value) else float(value)


def _row(results: dict, method: str, set_name: str, noise: str, level) -> dict:
    key = (method, set_name, noise, level)
    if key not in results:
        results[key] = {"method": method, "set": set_name, "noise": noise, "level": level, "images": []}
    return results[key]


def evaluate(
    sets: list[str | Path],
    methods: list[Method],
    *,
    mode: str = "synthetic",
    noise: list[tuple[str, list[float]]] | None = None,
    settings: InferenceSettings | None = None,
    limit: int | None = None,
    ct_min_hu: float = -1024.0,
    ct_max_hu: float = 3072.0,
    ct_include: str = "",
    progress: bool = False,
) -> dict:
    """Score ``methods`` on every set; return the JSON-ready result document."""
    from .. import metrics

    settings = settings or InferenceSettings()
    if mode not in MODES:
        raise EvaluationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if settings.protocol not in PROTOCOLS:
        raise EvaluationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {settings.protocol!r}")
    noise = noise if noise is not None else default_noise_grid()
    folders = [Path(s).expanduser() for s in sets]
    for folder in folders:
        if not folder.is_dir():
            raise EvaluationError(f"test set folder not found: {folder}")
    names = [f.name or str(f) for f in folders]
    if len(set(names)) != len(names):
        raise EvaluationError(f"test sets need distinct folder names (they label the columns), got {names}")
    for method in methods:
        if method.kind == "model" and mode == "synthetic" and method.model.in_channels != 3:
            raise EvaluationError(
                f"{method.label} is a 1-channel model; the synthetic protocol is RGB (use --mode ct for CT models)"
            )

    rows: dict = {}
    started = time.perf_counter()
    bar = None
    for folder, set_name in zip(folders, names, strict=True):
        if mode == "synthetic":
            items = synthetic_items(folder)[:limit]
            total = len(items) * sum(len(levels) for _, levels in noise) * len(methods)
        elif mode == "real":
            items = paired_items(folder, IMAGE_SUFFIXES, "real", "mean")[:limit]
            total = len(items) * len(methods)
        else:
            items = ct_items(folder, include=ct_include)[:limit]
            total = len(items) * len(methods)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=set_name, unit="run")
        for item in items:
            if mode == "synthetic":
                name, path = item
                clean8 = read_rgb8(path)
                clean01 = clean8.astype(np.float32) / np.float32(255.0)
                for kind, levels in noise:
                    for level in levels:
                        noisy = synthesize(clean01, kind, level)
                        for method in methods:
                            out = apply_method(method, noisy, settings, kind=kind, level=level)
                            _row(rows, method.label, set_name, kind, level)["images"].append(
                                {
                                    "name": name,
                                    "psnr": metrics.reference_psnr(clean01, out),
                                    "ssim": metrics.reference_ssim(clean01, out),
                                }
                            )
                            if bar is not None:
                                bar.update(1)
            elif mode == "real":
                name, noisy_path, clean_path = item
                clean8, noisy8 = read_rgb8(clean_path), read_rgb8(noisy_path)
                if clean8.shape != noisy8.shape:
                    raise EvaluationError(f"{noisy_path} and {clean_path} differ in size")
                noisy01 = noisy8.astype(np.float32) / np.float32(255.0)
                for method in methods:
                    out = apply_method(method, noisy01, settings)
                    value_psnr, value_ssim = metrics.real_noise_metrics(clean8, out)
                    _row(rows, method.label, set_name, "real", None)["images"].append(
                        {"name": name, "psnr": value_psnr, "ssim": value_ssim}
                    )
                    if bar is not None:
                        bar.update(1)
            else:
                name, noisy_path, clean_path = item
                noisy_volume, target_volume = read_ct_pair(noisy_path, clean_path, ct_min_hu, ct_max_hu)
                for method in methods:
                    for z, (noisy, target) in enumerate(zip(noisy_volume, target_volume, strict=True)):
                        target_hu = metrics.denormalize_ct(target, min_hu=ct_min_hu, max_hu=ct_max_hu)
                        out = apply_method(method, noisy, settings, clamp=False)  # the reference truncates in HU
                        out_hu = metrics.denormalize_ct(out, min_hu=ct_min_hu, max_hu=ct_max_hu)
                        _row(rows, method.label, set_name, "ct", None)["images"].append(
                            {
                                "name": name if len(noisy_volume) == 1 else f"{name}[z={z}]",
                                "psnr": metrics.ct_psnr(target_hu, out_hu),
                                "ssim": metrics.ct_ssim(target_hu, out_hu),
                            }
                        )
                    if bar is not None:
                        bar.update(1)
        if bar is not None:
            bar.close()

    results = []
    for row in rows.values():
        psnrs = [im["psnr"] for im in row["images"]]
        ssims = [im["ssim"] for im in row["images"]]
        row["n_images"] = len(psnrs)
        row["mean_psnr"] = _finite_or_none(float(np.mean(psnrs)))
        row["mean_ssim"] = _finite_or_none(float(np.mean(ssims)))
        row["images"] = [
            {"name": im["name"], "psnr": _finite_or_none(im["psnr"]), "ssim": _finite_or_none(im["ssim"])}
            for im in row["images"]
        ]
        results.append(row)
    return {
        "protocol": settings.protocol,
        "mode": mode,
        "noise": [{"kind": k, "levels": levels} for k, levels in noise] if mode == "synthetic" else mode,
        "sets": {name: str(folder) for name, folder in zip(names, folders, strict=True)},
        "methods": {m.label: {"kind": m.kind, "spec": m.spec, **m.info} for m in methods},
        "settings": {
            "device": settings.device,
            "tile_size": settings.options.tile_size if settings.protocol == "tiled" else None,
            "overlap": settings.options.effective_overlap if settings.protocol == "tiled" else None,
            "precision": settings.options.precision if settings.protocol == "tiled" else "fp32",
            "oracle_sigma": settings.oracle_sigma,
            "limit": limit,
            **({"ct_min_hu": ct_min_hu, "ct_max_hu": ct_max_hu, "ct_include": ct_include} if mode == "ct" else {}),
        },
        "elapsed_s": round(time.perf_counter() - started, 2),
        "results": results,
    }


# ------------------------------------------------------------------ tables
def _level_text(level) -> str:
    if level is None:
        return ""
    return f"{level:g}"


def markdown_tables(document: dict) -> str:
    """One table per noise kind: rows methods, columns set x level, cells ``PSNR/SSIM``."""
    results = document["results"]
    methods = list(document["methods"])
    sets = list(document["sets"])
    kinds = []
    for row in results:
        if row["noise"] not in kinds:
            kinds.append(row["noise"])
    by_key = {(r["method"], r["set"], r["noise"], r["level"]): r for r in results}
    out = [
        f"Protocol: {document['protocol']}, mode: {document['mode']}. Cells: PSNR (dB) / SSIM, mean over images;"
        " best PSNR per column in bold.",
        "",
    ]
    for kind in kinds:
        levels = []
        for row in results:
            if row["noise"] == kind and row["level"] not in levels:
                levels.append(row["level"])
        columns = [(s, lv) for s in sets for lv in levels]
        title = {"real": "Real noise", "ct": "Low-dose CT (HU)"}.get(kind, f"Noise: {kind}")
        header = ["Method"] + [f"{s} {_level_text(lv)}".strip() for s, lv in columns]
        out += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {}
        for column in columns:
            values = [
                by_key[(m, *column[:1], kind, column[1])]["mean_psnr"]
                for m in methods
                if (m, column[0], kind, column[1]) in by_key
            ]
            values = [v for v in values if v is not None]
            best[column] = max(values) if values else None
        for method in methods:
            cells = [method]
            for column in columns:
                row = by_key.get((method, column[0], kind, column[1]))
                if row is None or row["mean_psnr"] is None:
                    cells.append("-")
                    continue
                text = f"{row['mean_psnr']:.2f}/{row['mean_ssim']:.4f}"
                cells.append(f"**{text}**" if best[column] is not None and row["mean_psnr"] == best[column] else text)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipdenoise-evaluate",
        description="Score denoisers on the CLIPDenoising paper's protocol (PSNR/SSIM tables and per-image JSON).",
    )
    parser.add_argument("--sets", nargs="+", required=True, metavar="DIR", help="test sets: one folder each")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["noisy"],
        metavar="METHOD",
        help="noisy, nl_means, tv, wavelet, bm3d, checkpoint paths, installed model names",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="synthetic",
        help="synthetic (clean images + noise grid), real (noisy/clean pairs), ct (.npy slices, DICOM series"
        " or NIfTI volumes in HU: quarter-/full-dose pairs)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="reference",
        help="reference: whole image, pad 32 (the paper); tiled: the project's tiled inference",
    )
    parser.add_argument(
        "--noise",
        nargs="+",
        default=["default"],
        metavar="KIND:LEVELS",
        help="default (the paper's grid) or e.g. gauss:15,25 spatial_gauss:50 poisson:2.5 speckle:0.1",
    )
    parser.add_argument("--out", default="eval_results", help="folder for results.md and results.json")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="tiled protocol: largest tile edge (multiple of 16)"
    )
    parser.add_argument(
        "--overlap", type=int, default=None, help="tiled protocol: tile overlap (default: from the tile)"
    )
    parser.add_argument("--precision", default="fp32", help="tiled protocol: fp32, bf16, fp16 or auto")
    parser.add_argument(
        "--oracle-sigma",
        action="store_true",
        help="give classical methods the true sigma of Gaussian noise (default: estimated, blind)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    parser.add_argument("--ct-min-hu", type=float, default=-1024.0)
    parser.add_argument(
        "--ct-max-hu",
        type=float,
        default=3072.0,
        help="CT de-normalisation maximum: 3072 (the convention, default) or 3096 (the reference's typo,"
        " to reproduce its numbers)",
    )
    parser.add_argument("--ct-include", default="", help="CT: only files whose name contains this (e.g. L506)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.limit is not None and args.limit < 1:
            raise EvaluationError(f"--limit must be >= 1, got {args.limit}")
        if args.threads < 0:
            raise EvaluationError(f"--threads must be >= 0, got {args.threads}")
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        noise = parse_noise_specs(args.noise) if args.mode == "synthetic" else []
        options = InferenceOptions(
            tile_size=args.tile_size or None, overlap=args.overlap, device=args.device, precision=args.precision
        )
        settings = InferenceSettings(args.protocol, options, args.oracle_sigma)
        methods = resolve_methods(args.methods)
        document = evaluate(
            args.sets,
            methods,
            mode=args.mode,
            noise=noise,
            settings=settings,
            limit=args.limit,
            ct_min_hu=args.ct_min_hu,
            ct_max_hu=args.ct_max_hu,
            ct_include=args.ct_include,
            progress=not args.no_progress,
        )
    except (EvaluationError, DataError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_tables(document)
    (out / "results.md").write_text(table)
    with open(out / "results.json", "w") as handle:
        json.dump(document, handle, indent=1, default=_json_default, allow_nan=False)
    print(table)
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
