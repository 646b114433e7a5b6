"""Training data for adaptation: the inputs on the network's scale, training and held-out crops.

Axes, channel groups and intensity ranges come from
:func:`~napari_clipdenoise.inference.pipeline.plan_denoise` and the values from
:func:`~napari_clipdenoise.inference.pipeline.network_planes`, so the network is
trained on exactly what ``denoise`` will give it. Every plane of every image
(2D images, stacks, time series, each channel of multichannel data, or RGB
triplets for RGB models) becomes one ``C x H x W`` float32 array of the pool.

The pool is cut into crop-sized tiles; a seeded fraction of them is held out
(never trained on) for early stopping. Training crops are those tiles shifted
by a random offset when the shifted crop stays clear of every held-out tile,
then flipped/rotated with the reference's eight modes (only the four that keep
the image axes when the mask is structured along an axis).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..inference.options import InferenceOptions
from ..inference.pipeline import network_planes, plan_denoise
from ..training.augment import N_MODES, geometric_augment

#: Flip/rotate modes (training/augment.py) that keep rows as rows: identity, flip, rotate 180, both.
AXIS_PRESERVING_MODES = (0, 1, 4, 5)


@dataclass
class TrainingData:
    """The pool of planes to crop from and what it was made of."""

    planes: list[np.ndarray]  # C x H x W float32 on the network's [0, 1] scale
    replicate: bool  # grayscale for an RGB model: repeat to 3 channels, average the output
    sources: list[dict] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def channels(self) -> int:
        return int(self.planes[0].shape[0])

    @property
    def pixels(self) -> int:
        return int(sum(p.shape[1] * p.shape[2] for p in self.planes))


def as_image_list(images) -> list:
    """One array, or a list/tuple of arrays -> a list of arrays (TypeError for anything else)."""
    if hasattr(images, "shape") and hasattr(images, "dtype"):
        return [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is empty: give at least one noisy image or stack")
        for index, image in enumerate(images):
            if not (hasattr(image, "shape") and hasattr(image, "dtype")):
                raise TypeError(f"images[{index}] must be an array (numpy, dask or zarr), got {type(image).__name__}")
        return list(images)
    raise TypeError(f"images must be an array or a list of arrays, got {type(images).__name__}")


def _per_image(value, count: int, name: str) -> list:
    if value is None or isinstance(value, (str, bool)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries for {count} image(s); give one per image or a single value")
    return values


def _too_small(index: int, shape, height: int, width: int, crop: int) -> ValueError:
    fits = (min(height, width) // 16) * 16
    where = f"image {index} (shape {tuple(shape)})" if index else f"the image (shape {tuple(shape)})"
    if fits >= 32:
        hint = f"use crop_size={fits} (--crop-size {fits}) or larger images"
    else:
        hint = "adaptation needs planes of at least 32 x 32 px"
    return ValueError(f"{where} has planes of {height} x {width} px, too small for {crop} x {crop} px crops; {hint}")


def prepare_data(
    images,
    in_channels: int,
    *,
    axes=None,
    rgb=None,
    options: InferenceOptions | None = None,
    crop_size: int,
    max_pixels: int,
) -> TrainingData:
    """Read the inputs as ``denoise`` would, on the network's scale (see the module docstring).

    Raises
    ------
    ValueError
        An image is empty, too small for a crop, holds NaN/inf values, mixes
        RGB with single-channel data, or holds nothing but constant planes.
    """
    images = as_image_list(images)
    axes_list = _per_image(axes, len(images), "axes")
    rgb_list = _per_image(rgb, len(images), "rgb")
    options = options or InferenceOptions()
    plans = []
    for index, (image, image_axes, image_rgb) in enumerate(zip(images, axes_list, rgb_list, strict=True)):
        try:
            plan = plan_denoise(image, in_channels, axes=image_axes, rgb=image_rgb, options=options)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"image {index}: {exc}" if len(images) > 1 else str(exc)) from None
        height, width = plan.shape[plan.layout.y], plan.shape[plan.layout.x]
        if height < crop_size or width < crop_size:
            raise _too_small(index if len(images) > 1 else 0, plan.shape, height, width, crop_size)
        plans.append(plan)
    kinds = {(len(g.channels), g.replicate) for plan in plans for g in plan.groups}
    if len(kinds) > 1:
        raise ValueError(
            "the images mix RGB colour with single-channel data; adapt a model on one kind of data at a time"
        )
    planes_wanted = _plane_subsets(plans, max_pixels)
    pool: list[np.ndarray] = []
    sources = []
    digest = hashlib.sha256()
    for index, (image, plan, chosen) in enumerate(zip(images, plans, planes_wanted, strict=True)):
        before = len(pool)
        try:
            for _, _, values in network_planes(image, plan, chosen):
                values = np.ascontiguousarray(values, dtype=np.float32)
                pool.append(values)
                digest.update(f"{values.shape}|".encode())
                digest.update(values.tobytes())
        except ValueError as exc:
            raise ValueError(f"image {index}: {exc}" if len(images) > 1 else str(exc)) from None
        sources.append(
            {
                "shape": list(plan.shape),
                "dtype": str(np.dtype(image.dtype)),
                "axes": plan.layout.axes,
                "axes_guessed": plan.axes_guessed,
                "planes_used": len(chosen),
                "planes_total": len(plan.plane_indices),
                "arrays": len(pool) - before,
                "intensity_ranges": plan.intensity_ranges(),
            }
        )
    if not pool:
        raise ValueError("the images hold only constant planes: there is no noise to learn from")
    replicate = next(iter(kinds))[1]
    return TrainingData(pool, replicate, sources, digest.hexdigest())


def _plane_subsets(plans, max_pixels: int) -> list[list[tuple[int, ...]]]:
    """Evenly spaced planes of each image so the pool holds at most ``max_pixels`` pixels per channel group."""
    sizes = [len(p.plane_indices) * p.shape[p.layout.y] * p.shape[p.layout.x] * max(1, len(p.groups)) for p in plans]
    total = sum(sizes)
    subsets = []
    for plan in plans:
        count = len(plan.plane_indices)
        keep = count if total <= max_pixels else max(1, int(count * max_pixels / total))
        picks = sorted({int(round(v)) for v in np.linspace(0, count - 1, keep)}) if keep < count else range(count)
        subsets.append([plan.plane_indices[i] for i in picks])
    return subsets


@dataclass(frozen=True)
class Tile:
    plane: int
    top: int
    left: int


class CropSampler:
    """Held-out tiles and random training crops from a :class:`TrainingData` pool.

    The split depends only on the pool's geometry and ``seed``, so a resumed run
    holds out the same tiles; training draws take the generator they are given.
    """

    def __init__(
        self, data: TrainingData, crop_size: int, *, validation_fraction: float, max_validation: int, seed: int
    ):
        self.data = data
        self.crop = int(crop_size)
        tiles = [
            Tile(i, ty * self.crop, tx * self.crop)
            for i, plane in enumerate(data.planes)
            for ty in range(plane.shape[1] // self.crop)
            for tx in range(plane.shape[2] // self.crop)
        ]
        count = 0
        if validation_fraction > 0:
            if len(tiles) < 2:
                fits = [s for s in (48, 32) if s < self.crop]
                hint = f"use crop_size={fits[0]}, " if fits else ""
                raise ValueError(
                    f"the data hold only {len(tiles)} crop of {self.crop} x {self.crop} px, and early stopping needs"
                    f" at least one more to hold out; {hint}give more or larger images, or set validation_fraction=0"
                )
            count = min(max_validation, max(1, int(round(validation_fraction * len(tiles)))), len(tiles) // 2)
        order = np.random.default_rng([seed, 1]).permutation(len(tiles))
        held = set(order[:count].tolist())
        self.validation_tiles = [tiles[i] for i in sorted(held)]
        self.training_tiles = [t for i, t in enumerate(tiles) if i not in held]
        self._held_by_plane: dict[int, list[Tile]] = {}
        for tile in self.validation_tiles:
            self._held_by_plane.setdefault(tile.plane, []).append(tile)

    def _cut(self, tile: Tile, top: int, left: int) -> np.ndarray:
        return self.data.planes[tile.plane][:, top : top + self.crop, left : left + self.crop]

    def validation_crops(self) -> np.ndarray:
        """``n x C x crop x crop`` float32: the held-out crops (empty when none are held out)."""
        if not self.validation_tiles:
            return np.zeros((0, self.data.channels, self.crop, self.crop), np.float32)
        return np.stack([self._cut(t, t.top, t.left) for t in self.validation_tiles])

    def _clear(self, plane: int, top: int, left: int) -> bool:
        return all(
            abs(top - t.top) >= self.crop or abs(left - t.left) >= self.crop for t in self._held_by_plane.get(plane, ())
        )

    def training_batch(self, rng: np.random.Generator, batch_size: int, *, keep_axes: bool = False) -> np.ndarray:
        """``batch_size x C x crop x crop`` float32 crops that never overlap a held-out tile."""
        modes = AXIS_PRESERVING_MODES if keep_axes else tuple(range(N_MODES))
        picks = rng.integers(0, len(self.training_tiles), batch_size)
        shifts = rng.integers(-(self.crop // 2), self.crop // 2 + 1, (batch_size, 2))
        chosen_modes = rng.integers(0, len(modes), batch_size)
        crops = []
        for pick, (dy, dx), mode in zip(picks, shifts, chosen_modes, strict=True):
            tile = self.training_tiles[int(pick)]
            plane = self.data.planes[tile.plane]
            top = int(np.clip(tile.top + dy, 0, plane.shape[1] - self.crop))
            left = int(np.clip(tile.left + dx, 0, plane.shape[2] - self.crop))
            if not self._clear(tile.plane, top, left):
                top, left = tile.top, tile.left
            crop = self._cut(tile, top, left)
            # the geometric modes act on the first two axes: move channels last and back
            crops.append(np.moveaxis(geometric_augment(np.moveaxis(crop, 0, -1), modes[int(mode)]), -1, 0))
        return np.ascontiguousarray(np.stack(crops), dtype=np.float32)
