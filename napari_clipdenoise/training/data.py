"""Training data: image folders, random patches, online noise, validation sets.

Three kinds of training data (``data.kind``):

``clean``
    A folder of clean images (PNG, JPEG, TIFF; RGB or grayscale; 8 or 16 bit, or
    float in [0, 1]); noise is added online to every patch.
``pairs``
    Prepared noisy/clean pairs: ``data.train`` holds the clean images and
    ``data.noisy`` noisy ones with the same file names (e.g. from ``synth_srgb``).
``ct``
    CT slices stored as ``.npy`` (2D), normalised as (HU + 1024) / 4096 or in HU
    (``data.ct_units``); noise is added online.

Patches are drawn as the reference does: shuffled passes over the files, a random
``crop_size`` crop (smaller images are mirror-padded bottom/right), one of the
8 flip/rotate modes, then the noise. All randomness comes from one
``numpy.random.Generator`` whose state, with the shuffled order and the position
in it, is part of the resumable training state.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .augment import N_MODES, geometric_augment

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CT_SUFFIXES = (".npy",)
#: CT volumes in HU the evaluation also takes (a DICOM series is a folder, or files without an extension).
CT_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".dcm")
#: Luma weights used to turn an RGB image into one channel (those of skimage.color.rgb2gray).
RGB_TO_GRAY = np.array([0.2125, 0.7154, 0.0721], np.float32)


class DataError(ValueError):
    """Training or validation data are missing, unreadable or inconsistent."""


# ------------------------------------------------------------------ files
def list_files(folder: str | Path, suffixes=IMAGE_SUFFIXES, pattern: str = "", exclude=()) -> list[Path]:
    """Sorted files of ``folder`` with one of ``suffixes``, matching ``pattern``, minus ``exclude`` substrings."""
    folder = Path(folder).expanduser()
    if not str(folder) or not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not p.name.startswith(".")
        and (not pattern or fnmatch.fnmatch(p.name, pattern))
        and not any(s and s in p.name for s in exclude)
    )
    if not files:
        what = ", ".join(suffixes) + (f" matching {pattern!r}" if pattern else "")
        raise DataError(f"no {what} files in {folder}" + (f" (after excluding {list(exclude)})" if exclude else ""))
    return files


def read_image(path: str | Path) -> np.ndarray:
    """An image file as float32 ``H x W x C`` (C = 1 or 3) in [0, 1].

    Integer images are divided by their dtype's maximum (255, 65535); float images
    are taken as already in [0, 1]; an alpha channel is dropped.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            array = iio.imread(path)
    except Exception as exc:
        raise DataError(f"could not read image {path}: {exc}") from exc
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # TIFF stored channel-first
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"{path}: expected a 2D grayscale or RGB(A) image, got shape {array.shape}")
    if array.shape[-1] in (2, 4):  # gray+alpha or RGBA: drop alpha
        array = array[..., :-1]
    if array.dtype.kind in "ui":
        scale = float(np.iinfo(array.dtype).max)
        return (array.astype(np.float32) / np.float32(scale)).astype(np.float32)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind == "b":
        return array.astype(np.float32)
    raise DataError(f"{path}: unsupported pixel type {array.dtype}")


def read_ct_slice(path: str | Path, units: str = "normalized") -> np.ndarray:
    """A 2D ``.npy`` CT slice as float32 ``H x W x 1`` on the (HU + 1024) / 4096 scale."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"could not read {path} as a .npy array: {exc}") from exc
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2:
        raise DataError(f"{path}: a CT slice must be 2D, got shape {array.shape}")
    array = array.astype(np.float32)
    if units == "hu":
        array = (array + np.float32(1024.0)) / np.float32(4096.0)
    return array[..., np.newaxis]


def _stored_dtype(path: Path) -> np.dtype | None:
    """The pixel type of an image file, read from its header where the format allows."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return np.dtype(tif.series[0].dtype)
        import imageio.v3 as iio

        return np.dtype(iio.improps(path).dtype)
    except Exception:  # noqa: BLE001 - unreadable files are reported when they are sampled
        return None


def training_input_scale(kind: str, files, *, peek: int = 8):
    """The intensity convention a run feeds the network, for the checkpoint's ``input_scale``.

    CT runs: (HU + 1024) / 4096 (``CT_SCALE``). Image runs divide integers by their
    dtype's maximum (:func:`read_image`): 8-bit files give ``PHOTO_SCALE``, 16-bit
    files a 0..65535 scale, float files [0, 1]; judged on the first ``peek`` files.
    """
    from ..model.registry import CT_SCALE, PHOTO_SCALE, InputScale

    if kind == "ct":
        return CT_SCALE
    dtypes = {d for d in (_stored_dtype(Path(p)) for p in list(files)[:peek]) if d is not None}
    if not dtypes or dtypes == {np.dtype(np.uint8)}:
        return PHOTO_SCALE
    if dtypes == {np.dtype(np.uint16)}:
        return InputScale("16-bit", 0.0, 65535.0, "16-bit images, 0..65535 -> [0, 1]")
    if all(d.kind == "f" for d in dtypes):
        return InputScale("unit", 0.0, 1.0, "float images already on [0, 1]")
    names = ", ".join(sorted(str(d) for d in dtypes))
    return InputScale("dtype-max", 0.0, 1.0, f"mixed {names} images, each divided by its dtype's maximum")


def ct_item_name(path: Path) -> str:
    """A CT item's name without its extension (``L506_target.nii.gz`` -> ``L506_target``)."""
    name = path.name
    for suffix in sorted(CT_SUFFIXES + CT_VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_ct_item(path: Path) -> bool:
    """A ``.npy`` slice, a NIfTI volume, a DICOM file or a DICOM series folder."""
    from ..formats.dicom import is_dicom_dir, is_dicom_file

    if path.name.startswith("."):
        return False
    if path.is_dir():
        return is_dicom_dir(path)
    name = path.name.lower()
    return name.endswith(CT_SUFFIXES + CT_VOLUME_SUFFIXES) or (not path.suffix and is_dicom_file(path))


def read_ct_volume(path: str | Path, *, min_hu: float = -1024.0, max_hu: float = 3072.0) -> np.ndarray:
    """A CT item as float32 ``Z x Y x X`` on the normalised scale (1 x H x W for one slice).

    ``.npy`` slices are read as :func:`read_ct_slice` (already normalised). DICOM
    (after the modality LUT) and NIfTI volumes are in HU and are normalised as
    ``(HU - min_hu) / (max_hu - min_hu)``: (HU + 1024) / 4096 by default.
    """
    path = Path(path)
    if path.is_file() and path.name.lower().endswith(CT_SUFFIXES):
        return read_ct_slice(path, "normalized")[np.newaxis, ..., 0]
    from ..formats import open_source
    from ..formats.base import UnreadableImageError, UnsupportedFormatError

    try:
        source = open_source(path)
    except (UnreadableImageError, UnsupportedFormatError) as exc:
        raise DataError(f"{path}: {exc}") from exc
    try:
        if source.kind not in ("dicom", "nifti"):
            raise DataError(f"{path}: a CT item is a .npy slice, a DICOM file or series, or a NIfTI volume")
        hu = np.asarray(source.data, dtype=np.float32)
    finally:
        source.close()
    if hu.ndim == 2:
        hu = hu[np.newaxis]
    if hu.ndim != 3:
        raise DataError(f"{path}: a CT volume must be 2D or 3D, got shape {hu.shape}")
    return (hu - np.float32(min_hu)) / np.float32(max_hu - min_hu)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``H x W x C`` -> ``H x W x channels`` (gray is replicated; RGB -> luma for 1 channel)."""
    if image.shape[-1] == channels:
        return image
    if channels == 3 and image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and image.shape[-1] == 3:
        return (image @ RGB_TO_GRAY)[..., np.newaxis].astype(np.float32)
    raise DataError(f"cannot convert a {image.shape[-1]}-channel image to {channels} channels")


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """Mirror-pad (edge included, like OpenCV's BORDER_REFLECT) bottom/right up to ``size``."""
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if not pad_h and not pad_w:
        return image
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    while pad_h > image.shape[0] or pad_w > image.shape[1]:  # tiny images: pad in steps
        step_h, step_w = min(pad_h, image.shape[0]), min(pad_w, image.shape[1])
        image = np.pad(image, [(0, step_h), (0, step_w)] + [(0, 0)] * (image.ndim - 2), mode="symmetric")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
        widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="symmetric")


def match_pairs(clean_files: list[Path], noisy_dir: Path) -> list[Path]:
    """The noisy file of each clean file: same name, else same stem with any image suffix."""
    by_stem: dict[str, Path] = {}
    for path in sorted(noisy_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, path)
    matched, missing = [], []
    for clean in clean_files:
        noisy = noisy_dir / clean.name
        if not noisy.is_file():
            noisy = by_stem.get(clean.stem)
        if noisy is None:
            missing.append(clean.name)
        matched.append(noisy)
    if missing:
        raise DataError(
            f"{len(missing)} clean image(s) have no noisy counterpart with the same name or stem in {noisy_dir}:"
            f" {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return matched


# ------------------------------------------------------------------ noise
def _draw_level(rng: np.random.Generator, value) -> float:
    if isinstance(value, (list, tuple)):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def make_noisy(clean: np.ndarray, noise: dict, rng: np.random.Generator) -> np.ndarray:
    """Add the configured online noise to a ``[0, 1]`` float32 patch (returns float32).

    ``gaussian``: ``clean + N(0, (sigma/255)^2)`` per element (sigma drawn uniformly
    per patch when a range is given), no clip unless ``noise.clip``.
    ``poisson_gaussian``: Poisson counts at ``peak`` photons for intensity 1, then
    the Gaussian part. The synthesis itself is the package core's
    (:func:`napari_clipdenoise.noise.add_noise`).
    """
    from ..noise import add_noise

    kind = noise["kind"]
    clip = bool(noise["clip"])
    if kind == "gaussian":
        sigma = _draw_level(rng, noise["sigma"])
        out = add_noise(clean, "gaussian", sigma, rng=rng, clip=clip)
    elif kind == "poisson_gaussian":
        peak = _draw_level(rng, noise["peak"])
        sigma = _draw_level(rng, noise["sigma"])
        out = add_noise(clean, "poisson_peak", peak, rng=rng, clip=False)
        if sigma > 0:
            out = add_noise(out, "gaussian", sigma, rng=rng, clip=False)
        if clip:
            out = np.clip(out, 0.0, 1.0)
    else:
        raise DataError(f"noise kind {kind!r} cannot be synthesised online")
    return np.asarray(out, dtype=np.float32)


# ------------------------------------------------------------------ sampler
class _ImageCache:
    """A small LRU cache of decoded images (float32 HWC)."""

    def __init__(self, loader, capacity: int):
        self.loader, self.capacity = loader, capacity
        self.items: OrderedDict = OrderedDict()

    def __call__(self, key):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.loader(key)
        if self.capacity:
            self.items[key] = value
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return value


class PatchSampler:
    """Random training batches ``(clean, noisy)``, each ``N x C x crop x crop`` float32.

    Parameters
    ----------
    config : dict
        The resolved training configuration (uses ``data``, ``noise``, ``model.in_channels``).
    seed : int
        Seeds the sampler's own generator (file order, crops, modes, noise, mixup).
    """

    def __init__(self, config: dict, seed: int):
        data = config["data"]
        self.kind = data["kind"]
        self.noise = dict(config["noise"])
        self.channels = int(config["model"]["in_channels"])
        self.crop = int(data["crop_size"])
        self.batch_size = int(data["batch_size"])
        self.augment = bool(data["geometric_augs"])
        self.ct_units = data["ct_units"]
        suffixes = CT_SUFFIXES if self.kind == "ct" else IMAGE_SUFFIXES
        self.files = list_files(data["train"], suffixes, data["pattern"], data["exclude"])
        self.noisy_files: list[Path] | None = None
        if self.kind == "pairs":
            if not data["noisy"]:
                raise DataError("data.kind = 'pairs' needs data.noisy: the folder of noisy images")
            noisy_dir = Path(data["noisy"]).expanduser()
            if not noisy_dir.is_dir():
                raise DataError(f"noisy image folder not found: {noisy_dir}")
            self.noisy_files = match_pairs(self.files, noisy_dir)
        self.rng = np.random.default_rng(seed)
        self.order = np.zeros(0, np.int64)
        self.position = 0
        self.epoch = 0
        self._cache = _ImageCache(self._load, int(data["cache_images"]))

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.kind == "ct":
            clean = read_ct_slice(self.files[index], self.ct_units)
        else:
            clean = to_channels(read_image(self.files[index]), self.channels)
        noisy = None
        if self.noisy_files is not None:
            noisy = to_channels(read_image(self.noisy_files[index]), self.channels)
            if noisy.shape != clean.shape:
                raise DataError(
                    f"{self.noisy_files[index]} has shape {noisy.shape[:2]} but its clean image has {clean.shape[:2]}"
                )
        return clean, noisy

    def _next_index(self) -> int:
        if self.position >= len(self.order):
            self.order = self.rng.permutation(len(self.files))
            self.position = 0
            self.epoch += 1
        index = int(self.order[self.position])
        self.position += 1
        return index

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(clean, noisy)`` pair of ``C x crop x crop`` float32 patches."""
        clean, noisy = self._cache(self._next_index())
        clean = pad_to(clean, self.crop)
        noisy = pad_to(noisy, self.crop) if noisy is not None else None
        top = int(self.rng.integers(0, clean.shape[0] - self.crop + 1))
        left = int(self.rng.integers(0, clean.shape[1] - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        clean = clean[window]
        noisy = noisy[window] if noisy is not None else None
        if self.augment:
            mode = int(self.rng.integers(0, N_MODES))
            clean = geometric_augment(clean, mode)
            noisy = geometric_augment(noisy, mode) if noisy is not None else None
        clean = np.ascontiguousarray(clean, dtype=np.float32)
        if noisy is None:
            noisy = make_noisy(clean, self.noise, self.rng)
        return clean.transpose(2, 0, 1), np.ascontiguousarray(noisy, dtype=np.float32).transpose(2, 0, 1)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample() for _ in range(self.batch_size)]
        clean = np.stack([p[0] for p in pairs])
        noisy = np.stack([p[1] for p in pairs])
        return clean, noisy

    # --- resumable state (plain Python data, loadable with torch.load(weights_only=True))
    def state_dict(self) -> dict:
        return {
            "bit_generator": _jsonable(self.rng.bit_generator.state),
            "order": [int(i) for i in self.order],
            "position": int(self.position),
            "epoch": int(self.epoch),
            "files": [p.name for p in self.files],
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("files") and state["files"] != [p.name for p in self.files]:
            raise DataError(
                "the training files differ from those of the run being resumed"
                f" ({len(state['files'])} then, {len(self.files)} now); resume with the same data folder"
            )
        self.rng.bit_generator.state = state["bit_generator"]
        self.order = np.asarray(state["order"], np.int64)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------ validation
def center_crop(image: np.ndarray, max_size: int) -> np.ndarray:
    """Centre crop ``H x W x C`` to at most ``max_size`` and down to multiples of 16."""
    height, width = image.shape[:2]
    target_h = min(height, max_size or height) // 16 * 16
    target_w = min(width, max_size or width) // 16 * 16
    if target_h < 16 or target_w < 16:
        raise DataError(f"validation image of {height} x {width} px is smaller than 16 px")
    top, left = (height - target_h) // 2, (width - target_w) // 2
    return image[top : top + target_h, left : left + target_w]


def load_validation_set(config: dict, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, clean CHW, noisy CHW)]`` for validation, the noise fixed by ``seed`` per image.

    Empty when ``data.val`` is not set.
    """
    data, noise = config["data"], dict(config["noise"])
    if not data["val"]:
        return []
    channels = int(config["model"]["in_channels"])
    max_size = int(config["output"]["val_max_size"])
    kind = data["kind"]
    suffixes = CT_SUFFIXES if kind == "ct" else IMAGE_SUFFIXES
    files = list_files(data["val"], suffixes, data["pattern"] if kind == "ct" else "")
    val_sigma = config["output"]["val_sigma"]
    if isinstance(val_sigma, list):
        val_sigma = float(np.mean(val_sigma))
    if val_sigma:
        noise["sigma"] = val_sigma
    elif isinstance(noise["sigma"], list):
        noise["sigma"] = float(np.mean(noise["sigma"]))
    if isinstance(noise.get("peak"), list):
        noise["peak"] = float(np.mean(noise["peak"]))
    out = []
    for i, path in enumerate(files):
        if kind == "ct":
            clean = read_ct_slice(path, data["ct_units"])
        else:
            clean = to_channels(read_image(path), channels)
        clean = np.ascontiguousarray(center_crop(clean, max_size))
        if kind == "pairs":
            noisy_dir = Path(data["val_noisy"] or "").expanduser()
            if not data["val_noisy"] or not noisy_dir.is_dir():
                raise DataError("validation pairs need data.val_noisy: the folder of noisy validation images")
            noisy = to_channels(read_image(match_pairs([path], noisy_dir)[0]), channels)
            noisy = np.ascontiguousarray(center_crop(noisy, max_size))
        else:
            noisy = make_noisy(clean, noise, np.random.default_rng([seed, i]))
        out.append((path.name, clean.transpose(2, 0, 1).copy(), noisy.transpose(2, 0, 1).copy()))
    return out
