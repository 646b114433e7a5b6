"""Offline synthesis of (noisy, clean) sRGB training pairs with a CBDNet-style camera pipeline.

``python -m napari_clipdenoise.training.synth_srgb --clean DIV2K_sub/ --out DIV2K_noisy/ --seed 0``

Per image (METHOD.md section 3, the reference's ``ISP.cbdnet_noise_generate_srgb`` with
``is_strict=True``), on float64 RGB in [0, 1]:

1. inverse camera response: one of the response curves, picked at random;
2. RGB -> XYZ (scikit-image's ``rgb2xyz``, as the reference) -> camera RGB with a random
   convex mix of 4 XYZ->camera matrices (rows normalised to sum 1), clipped to [0, 1];
3. random Bayer mosaic (GRBG, RGGB, GBRG or BGGR);
4. inverse white balance: R and B sites times gains ``U(0.75, 1)``;
5. raw noise ``x + N(0,1) * (sigma_s * x) + N(0,1) * sigma_c`` (0.04 and 0.03), clipped to [0, 1];
6. white balance back (gains ``1/g``), clipped; Malvar (2004) demosaicing, clipped;
7. camera RGB -> XYZ -> RGB, then the forward response curve; saved as 8-bit PNG.

The clean target of each pair is the original image (the noisy file has the clean
file's stem and a ``.png`` suffix, so ``data.kind = "pairs"`` matches them).

Camera response curves
----------------------
The reference uses the 201 measured curves of Columbia's DoRF database as
distributed with CBDNet (``201_CRF_data.mat`` and ``dorfCurvesInv.mat``). Those files
cannot be downloaded here, so by default this module uses a GENERATED, documented
parametric family of 201 curves instead (:func:`parametric_response_curves`)::

    f_k(x) = S_{p_k}(x ** (1 / gamma_k)),   S_p(t) = t**p / (t**p + (1 - t)**p)

with ``gamma_k = 1 + 2 u_k`` (1 to 3; sRGB is about 2.2) and ``p_k = 1 + 0.6 v_k``
(1 = no extra contrast, up to a mild S-curve), where ``(u_k, v_k)`` is the additive
recurrence ``(frac(k a1), frac(k a2))`` with the plastic-number constants
``a1 = 0.7548776662466927``, ``a2 = 0.5698402909980532`` (an evenly spread, seed-free
grid). Every curve is strictly increasing with ``f(0) = 0`` and ``f(1) = 1``; each is
tabulated at 1024 points like DoRF (its inverse: the same table read the other way). These are NOT the
measured DoRF curves: they span a similar gamma range but not the measured shapes. If
you have the two ``.mat`` files, pass ``--crf-mat`` and ``--icrf-mat`` to use them.

Other deviations from the reference: curve look-up uses linear interpolation
instead of the reference's nearest-bin search (a difference below one 1/1024 bin),
the final 8-bit conversion clips to [0, 255] (the reference's ``astype(np.uint8)``
wraps values above 1 around), and all randomness comes from one seeded
``numpy.random.Generator`` per image (seed and file name), so a run is reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

#: XYZ -> camera matrices of four cameras (row-major 3x3), as in CBDNet's ISP code.
XYZ2CAM = np.array(
    [
        [1.0234, -0.2969, -0.2266, -0.5625, 1.6328, -0.0469, -0.0703, 0.2188, 0.6406],
        [0.4913, -0.0541, -0.0202, -0.613, 1.3513, 0.2906, -0.1564, 0.2151, 0.7183],
        [0.838, -0.263, -0.0639, -0.2887, 1.0725, 0.2496, -0.0627, 0.1427, 0.5438],
        [0.6596, -0.2079, -0.0562, -0.4782, 1.3016, 0.1933, -0.097, 0.1581, 0.5181],
    ]
)
BAYER_PATTERNS = ("GRBG", "RGGB", "GBRG", "BGGR")
N_CURVES = 201
CURVE_SAMPLES = 1024
SIGMA_S = 0.04  # signal-dependent raw noise (s2 / 4 with s2 = 0.16), the reference's "strict" level
SIGMA_C = 0.03  # signal-independent raw noise (c2 / 2 with c2 = 0.06)
_A1, _A2 = 0.7548776662466927, 0.5698402909980532


@dataclass(frozen=True)
class ResponseCurves:
    """Tabulated camera response curves: forward ``irradiance -> brightness`` and inverse.

    ``irradiance[k]``/``brightness[k]`` sample curve k (increasing); the inverse
    tables ``inv_brightness[k]``/``inv_irradiance[k]`` sample its inverse.
    """

    irradiance: np.ndarray
    brightness: np.ndarray
    inv_brightness: np.ndarray
    inv_irradiance: np.ndarray
    source: str

    def __len__(self) -> int:
        return self.irradiance.shape[0]

    def forward(self, values: np.ndarray, index: int) -> np.ndarray:
        return np.interp(values, self.irradiance[index], self.brightness[index])

    def inverse(self, values: np.ndarray, index: int) -> np.ndarray:
        return np.interp(values, self.inv_brightness[index], self.inv_irradiance[index])


def parametric_curve_parameters(count: int = N_CURVES) -> np.ndarray:
    """``(gamma, p)`` of the generated family, shape ``(count, 2)`` (see the module docstring)."""
    k = np.arange(count, dtype=np.float64)
    u, v = np.mod(k * _A1, 1.0), np.mod(k * _A2, 1.0)
    return np.stack([1.0 + 2.0 * u, 1.0 + 0.6 * v], axis=1)


def _s_curve(t: np.ndarray, p: float) -> np.ndarray:
    tp, sp = np.power(t, p), np.power(1.0 - t, p)
    return tp / (tp + sp)


def parametric_response_curves(count: int = N_CURVES, samples: int = CURVE_SAMPLES) -> ResponseCurves:
    """The generated family of ``count`` response curves (deterministic, no data files)."""
    x = np.linspace(0.0, 1.0, samples)
    brightness = np.stack([_s_curve(np.power(x, 1.0 / g), p) for g, p in parametric_curve_parameters(count)])
    irradiance = np.broadcast_to(x, brightness.shape).copy()
    # the inverse tables are the forward ones swapped: an exact inverse of the interpolated curve
    return ResponseCurves(
        irradiance,
        brightness,
        brightness.copy(),
        irradiance.copy(),
        f"generated parametric family ({count} curves, gamma 1-3, S-contrast 1-1.6)",
    )


def load_dorf_curves(crf_mat: str | Path, icrf_mat: str | Path) -> ResponseCurves:
    """Read CBDNet's ``201_CRF_data.mat`` (keys I, B) and ``dorfCurvesInv.mat`` (invI, invB)."""
    from scipy.io import loadmat

    try:
        forward, inverse = loadmat(str(crf_mat)), loadmat(str(icrf_mat))
        arrays = [
            np.asarray(forward["I"], np.float64),
            np.asarray(forward["B"], np.float64),
            np.asarray(inverse["invB"], np.float64),
            np.asarray(inverse["invI"], np.float64),
        ]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(
            f"could not read response curves from {crf_mat} (keys I, B) and {icrf_mat} (keys invI, invB): {exc}"
        ) from exc
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 2:
        raise ValueError(
            f"response-curve tables must all have the same (curves, samples) shape, got {[a.shape for a in arrays]}"
        )
    return ResponseCurves(*arrays, source=f"DoRF ({Path(crf_mat).name}, {Path(icrf_mat).name})")


# ------------------------------------------------------------------ Bayer
def bayer_masks(shape: tuple[int, int], pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean R, G, B site masks of a Bayer ``pattern`` (e.g. "RGGB": R at (0,0), B at (1,1))."""
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(BAYER_PATTERNS)}, got {pattern!r}")
    masks = {c: np.zeros(shape, bool) for c in "RGB"}
    for offset, colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern, strict=True):
        masks[colour][offset[0] :: 2, offset[1] :: 2] = True
    return masks["R"], masks["G"], masks["B"]


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The ``H x W`` colour-filter-array image of an ``H x W x 3`` RGB image."""
    r, g, b = bayer_masks(rgb.shape[:2], pattern)
    return rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b


def white_balance_mask(shape: tuple[int, int], pattern: str, red_gain: float, blue_gain: float) -> np.ndarray:
    r, _, b = bayer_masks(shape, pattern)
    mask = np.ones(shape)
    mask[r] = red_gain
    mask[b] = blue_gain
    return mask


_G_AT_RB = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8.0
_RB_AT_G_ROW = (
    np.array([[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]]) / 8.0
)  # the colour on the same row as this green site
_RB_AT_G_COL = _RB_AT_G_ROW.T  # the colour on the same column
_RB_AT_BR = (
    np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]) / 8.0
)  # R at B sites and B at R sites


def demosaic_malvar(cfa: np.ndarray, pattern: str) -> np.ndarray:
    """Malvar-He-Cutler (2004) gradient-corrected bilinear demosaicing -> ``H x W x 3`` (not clipped).

    The four 5x5 filters of the paper, applied with mirror borders
    (``scipy.ndimage.convolve``'s default "reflect"), as the reference's copy of
    colour-demosaicing's implementation.
    """
    cfa = np.asarray(cfa, np.float64)
    if cfa.ndim != 2:
        raise ValueError(f"a Bayer image is 2D, got shape {cfa.shape}")
    r_mask, g_mask, b_mask = bayer_masks(cfa.shape, pattern)
    red, green, blue = cfa * r_mask, cfa * g_mask, cfa * b_mask
    green = np.where(r_mask | b_mask, ndimage.convolve(cfa, _G_AT_RB), green)
    same_row = ndimage.convolve(cfa, _RB_AT_G_ROW)
    same_col = ndimage.convolve(cfa, _RB_AT_G_COL)
    diagonal = ndimage.convolve(cfa, _RB_AT_BR)
    red_rows = np.any(r_mask, axis=1)[:, None] & np.ones(cfa.shape, bool)
    red_cols = np.any(r_mask, axis=0)[None, :] & np.ones(cfa.shape, bool)
    blue_rows = np.any(b_mask, axis=1)[:, None] & np.ones(cfa.shape, bool)
    blue_cols = np.any(b_mask, axis=0)[None, :] & np.ones(cfa.shape, bool)
    # green sites: red row & blue column, or blue row & red column
    red = np.where(red_rows & blue_cols, same_row, red)
    red = np.where(blue_rows & red_cols, same_col, red)
    blue = np.where(blue_rows & red_cols, same_row, blue)
    blue = np.where(red_rows & blue_cols, same_col, blue)
    red = np.where(blue_rows & blue_cols, diagonal, red)
    blue = np.where(red_rows & red_cols, diagonal, blue)
    return np.stack([red, green, blue], axis=-1)


# ------------------------------------------------------------------ pipeline
def _xyz_to_cam_matrix(weights: np.ndarray) -> np.ndarray:
    matrix = (weights[:, None] * XYZ2CAM).sum(axis=0).reshape(3, 3)
    return matrix / matrix.sum(axis=1, keepdims=True)


def _apply_matrix(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return np.einsum("ij,hwj->hwi", matrix, image)


def synthesize_srgb(
    clean: np.ndarray,
    rng: np.random.Generator,
    curves: ResponseCurves,
    *,
    sigma_s: float = SIGMA_S,
    sigma_c: float = SIGMA_C,
) -> tuple[np.ndarray, dict]:
    """Noisy sRGB version of ``clean`` (``H x W x 3`` float in [0, 1]) and the drawn parameters.

    Returns float64 in [0, 1]; see the module docstring for the steps. ``H`` and ``W``
    should be even (the Bayer pattern's period); odd sizes work but the last row or
    column sees half a pattern.
    """
    from skimage.color import rgb2xyz, xyz2rgb

    clean = np.asarray(clean, np.float64)
    if clean.ndim != 3 or clean.shape[-1] != 3:
        raise ValueError(f"clean must be an H x W x 3 RGB image, got shape {clean.shape}")
    curve = int(rng.integers(0, len(curves)))
    weights = rng.random(4)
    weights = weights / weights.sum()
    pattern = BAYER_PATTERNS[int(rng.integers(0, 4))]
    red_gain, blue_gain = (float(g) for g in rng.uniform(0.75, 1.0, size=2))
    xyz2cam = _xyz_to_cam_matrix(weights)

    linear = curves.inverse(clean, curve)
    cam = np.clip(_apply_matrix(rgb2xyz(linear), xyz2cam), 0.0, 1.0)
    raw = mosaic(cam, pattern) * white_balance_mask(cam.shape[:2], pattern, red_gain, blue_gain)
    shot = rng.standard_normal(raw.shape)
    read = rng.standard_normal(raw.shape)
    noisy_raw = np.clip(raw + shot * (sigma_s * raw) + read * sigma_c, 0.0, 1.0)
    noisy_raw = np.clip(noisy_raw * white_balance_mask(raw.shape, pattern, 1 / red_gain, 1 / blue_gain), 0.0, 1.0)
    cam_noisy = np.clip(demosaic_malvar(noisy_raw, pattern), 0.0, 1.0)
    xyz = np.clip(_apply_matrix(cam_noisy, np.linalg.inv(xyz2cam)), 0.0, 1.0)
    noisy = np.clip(curves.forward(xyz2rgb(xyz), curve), 0.0, 1.0)
    params = {
        "curve": curve,
        "camera_weights": [float(w) for w in weights],
        "pattern": pattern,
        "red_gain": red_gain,
        "blue_gain": blue_gain,
        "sigma_s": sigma_s,
        "sigma_c": sigma_c,
    }
    return noisy, params


def to_uint8(image01: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(image01, np.float64) * 255.0), 0, 255).astype(np.uint8)


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one image: depends on the run seed and the file name only."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def synthesize_folder(
    clean_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    curves: ResponseCurves | None = None,
    sigma_s: float = SIGMA_S,
    sigma_c: float = SIGMA_C,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Write a noisy PNG for every image of ``clean_dir`` into ``out_dir``; return the per-image log."""
    from .data import IMAGE_SUFFIXES, list_files, read_image, to_channels

    clean_dir, out_dir = Path(clean_dir).expanduser(), Path(out_dir).expanduser()
    files = list_files(clean_dir, IMAGE_SUFFIXES)
    if out_dir.resolve() == clean_dir.resolve():
        raise ValueError("--out must differ from --clean: the clean images are never overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = curves or parametric_response_curves()
    import imageio.v3 as iio

    log = []
    iterator = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="synth_srgb", unit="img")
    for path in iterator:
        target = out_dir / f"{path.stem}.png"
        if target.exists() and not overwrite:
            log.append({"file": path.name, "noisy": target.name, "skipped": "exists"})
            continue
        clean = to_channels(read_image(path), 3).astype(np.float64)
        noisy, params = synthesize_srgb(clean, image_rng(seed, path.name), curves, sigma_s=sigma_s, sigma_c=sigma_c)
        iio.imwrite(target, to_uint8(noisy))
        log.append({"file": path.name, "noisy": target.name, **params})
    with open(out_dir / "synth_srgb_log.json", "w") as handle:
        json.dump({"seed": seed, "curves": curves.source, "clean_dir": str(clean_dir), "images": log}, handle, indent=1)
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_clipdenoise.training.synth_srgb",
        description="Synthesize noisy sRGB training images with a CBDNet-style camera pipeline (seeded).",
    )
    parser.add_argument("--clean", required=True, help="folder of clean RGB images (e.g. DIV2K sub-images)")
    parser.add_argument("--out", required=True, help="folder for the noisy PNGs (same stems as the clean files)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma-s", type=float, default=SIGMA_S, help="signal-dependent raw noise (default 0.04)")
    parser.add_argument("--sigma-c", type=float, default=SIGMA_C, help="signal-independent raw noise (default 0.03)")
    parser.add_argument("--crf-mat", help="CBDNet's 201_CRF_data.mat (measured DoRF curves), with --icrf-mat")
    parser.add_argument("--icrf-mat", help="CBDNet's dorfCurvesInv.mat, with --crf-mat")
    parser.add_argument("--overwrite", action="store_true", help="replace noisy files that already exist")
    parser.add_argument("--write-curves", metavar="NPZ", help="also save the response-curve tables used")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        if bool(args.crf_mat) != bool(args.icrf_mat):
            raise ValueError("--crf-mat and --icrf-mat go together (forward and inverse curves)")
        curves = load_dorf_curves(args.crf_mat, args.icrf_mat) if args.crf_mat else parametric_response_curves()
        if args.sigma_s < 0 or args.sigma_c < 0:
            raise ValueError("--sigma-s and --sigma-c must be >= 0")
        if args.write_curves:
            np.savez(
                args.write_curves,
                irradiance=curves.irradiance,
                brightness=curves.brightness,
                inv_brightness=curves.inv_brightness,
                inv_irradiance=curves.inv_irradiance,
                source=np.array(curves.source),
            )
        log = synthesize_folder(
            args.clean,
            args.out,
            seed=args.seed,
            curves=curves,
            sigma_s=args.sigma_s,
            sigma_c=args.sigma_c,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValueError as exc:  # DataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = sum(1 for item in log if "skipped" not in item)
    print(f"wrote {written} noisy image(s) to {args.out} ({len(log) - written} skipped; curves: {curves.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
