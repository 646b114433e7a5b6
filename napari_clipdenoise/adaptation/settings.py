"""The settings of one adaptation run: one frozen, validated object (as InferenceOptions is for inference).

Errors are :class:`~napari_clipdenoise.inference.options.OptionError` naming the
field, so every face can name it in its own syntax (``--crop-size`` on the
command line). This module imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from ..inference.options import ALIGN, OptionError

#: The time budget when neither ``steps`` nor ``max_minutes`` is given.
DEFAULT_MINUTES = 5.0
#: Smallest crop edge: four 2x downsamplings leave 2 x 2 px at the deepest feature.
MIN_CROP = 32
#: Decoder blocks (``up_path.0`` .. ``up_path.4``); the output conv ``last`` is always trained.
DECODER_BLOCKS = 5
PRECISIONS = ("fp32", "bf16")
STRUCTURED_AXES = ("X", "Y")
#: Fields that may change when a run is resumed (its budget, the CPU threads); all others must match the saved run.
RESUMABLE_FIELDS = ("steps", "max_minutes", "threads")


def _whole(value, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= minimum


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass(frozen=True)
class AdaptSettings:
    """How :func:`napari_clipdenoise.adapt` fine-tunes a model on noisy images.

    Parameters
    ----------
    steps : int or None
        Optimiser steps to run; None: as many as ``max_minutes`` allows.
    max_minutes : float or None
        Wall-clock budget of the training loop (data preparation not counted).
        None: only ``steps`` limits the run, or :data:`DEFAULT_MINUTES` when no
        ``steps`` are given either. With both, the first reached ends it.
    crop_size : int
        Edge of the square training crops in pixels (a multiple of 16, >= 32).
    batch_size : int
        Crops per step.
    mask_fraction : float
        Fraction of each crop's pixels whose value is hidden and predicted (one
        per cell of a stratified grid; Noise2Void uses 0.002, more gives more
        signal per step at the cost of a more perturbed input).
    neighbourhood : int
        Odd window edge from which a hidden pixel's replacement (a random
        neighbour that is itself not hidden) is drawn.
    structured_axis : {"X", "Y"} or None
        For noise correlated along image rows (``"X"``) or columns (``"Y"``):
        also hide ``structured_length`` pixels along that axis around each
        predicted pixel (structN2V), so the correlated noise cannot be read off
        the neighbours. Crops are then only flipped and rotated by 180 degrees,
        which keeps the axis.
    structured_length : int
        Odd length of the hidden line, centre included.
    decoder_stages : int
        How many of the decoder's last blocks are trained (1..5, counted from
        the output; the output convolution always is). 2 trains ``up_path.3``,
        ``up_path.4`` and ``last`` (224k parameters); 5 trains the whole decoder.
    lr : float
        AdamW learning rate; constant for the first half of the budget, then a
        cosine down to ``lr / 100`` (the reference schedule's shape, compressed).
    weight_decay : float
        AdamW weight decay.
    feature_aug_level : float
        The paper's progressive feature augmentation (0 = off; the recipes use
        0.025): encoder features are multiplied by ``1 + level * k * N(0, 1)``.
    validation_fraction : float
        Fraction of the crop-sized tiles held out (never trained on) for early
        stopping on the masked loss (at most 0.5; 0 disables early stopping).
    max_validation_crops : int
        At most this many held-out crops.
    validate_every : int
        Steps between evaluations of the held-out masked loss (and state saves).
    patience : int
        Stop after this many evaluations without improvement (0: never stop
        early). The weights of the best evaluation are the result.
    seed : int
        Seed of every random choice (crops, masks, augmentation, feature noise).
    precision : {"fp32", "bf16"}
        Training arithmetic (bf16 autocast halves the time on CPUs with bf16
        instructions; the loss is computed in fp32).
    threads : int or None
        torch CPU threads during the run (None: torch's current setting).
    max_pixels : int
        At most this many pixels (per channel group) are read from the inputs;
        beyond that, evenly spaced planes are used (recorded in the provenance).
    """

    steps: int | None = None
    max_minutes: float | None = None
    crop_size: int = 64
    batch_size: int = 8
    mask_fraction: float = 0.02
    neighbourhood: int = 5
    structured_axis: str | None = None
    structured_length: int = 5
    decoder_stages: int = 2
    lr: float = 2e-4
    weight_decay: float = 1e-4
    feature_aug_level: float = 0.0
    validation_fraction: float = 0.1
    max_validation_crops: int = 32
    validate_every: int = 25
    patience: int = 8
    seed: int = 0
    precision: str = "fp32"
    threads: int | None = None
    max_pixels: int = 1 << 25

    def __post_init__(self) -> None:
        if self.steps is not None:
            if not _whole(self.steps, 1):
                raise OptionError("steps", f"must be a whole number >= 1 or None, got {self.steps!r}")
            object.__setattr__(self, "steps", int(self.steps))
        if self.max_minutes is not None:
            if not _number(self.max_minutes) or float(self.max_minutes) <= 0:
                raise OptionError("max_minutes", f"must be a number of minutes > 0 or None, got {self.max_minutes!r}")
            object.__setattr__(self, "max_minutes", float(self.max_minutes))
        if self.steps is None and self.max_minutes is None:
            object.__setattr__(self, "max_minutes", DEFAULT_MINUTES)
        if not _whole(self.crop_size, MIN_CROP) or self.crop_size % ALIGN:
            raise OptionError(
                "crop_size", f"must be a multiple of {ALIGN} of at least {MIN_CROP} pixels, got {self.crop_size!r}"
            )
        if not _whole(self.batch_size, 1):
            raise OptionError("batch_size", f"must be a whole number >= 1, got {self.batch_size!r}")
        if not _number(self.mask_fraction) or not 0 < float(self.mask_fraction) <= 0.25:
            raise OptionError("mask_fraction", f"must be a fraction in (0, 0.25], got {self.mask_fraction!r}")
        object.__setattr__(self, "mask_fraction", float(self.mask_fraction))
        if not _whole(self.neighbourhood, 3) or self.neighbourhood % 2 == 0 or self.neighbourhood > 31:
            raise OptionError("neighbourhood", f"must be an odd window edge from 3 to 31, got {self.neighbourhood!r}")
        if self.structured_axis is not None:
            axis = str(self.structured_axis).upper()
            if axis not in STRUCTURED_AXES:
                raise OptionError(
                    "structured_axis", f"must be 'X' (rows), 'Y' (columns) or None, got {self.structured_axis!r}"
                )
            object.__setattr__(self, "structured_axis", axis)
        if not _whole(self.structured_length, 3) or self.structured_length % 2 == 0:
            raise OptionError("structured_length", f"must be an odd number >= 3, got {self.structured_length!r}")
        if self.structured_length > self.crop_size // 2:
            raise OptionError(
                "structured_length",
                f"({self.structured_length}) must be at most half the {{crop_size}} ({self.crop_size})",
            )
        if self.structured_axis is not None and self.mask_fraction * self.structured_length > 0.5:
            raise OptionError(
                "mask_fraction",
                f"({self.mask_fraction}) times {{structured_length}} ({self.structured_length}) would hide more than"
                " half of every crop; lower one of them",
            )
        if not _whole(self.decoder_stages, 1) or self.decoder_stages > DECODER_BLOCKS:
            raise OptionError(
                "decoder_stages",
                f"must be 1..{DECODER_BLOCKS} (blocks trained from the output), got {self.decoder_stages!r}",
            )
        for name in ("lr", "weight_decay", "feature_aug_level"):
            value = getattr(self, name)
            if not _number(value) or float(value) < 0 or (name == "lr" and float(value) == 0):
                raise OptionError(name, f"must be a number {'>' if name == 'lr' else '>='} 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not _number(self.validation_fraction) or not 0 <= float(self.validation_fraction) <= 0.5:
            raise OptionError(
                "validation_fraction", f"must be a fraction in [0, 0.5], got {self.validation_fraction!r}"
            )
        object.__setattr__(self, "validation_fraction", float(self.validation_fraction))
        for name, minimum in (("max_validation_crops", 1), ("validate_every", 1), ("patience", 0), ("seed", 0)):
            if not _whole(getattr(self, name), minimum):
                raise OptionError(name, f"must be a whole number >= {minimum}, got {getattr(self, name)!r}")
        if self.precision not in PRECISIONS:
            raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and not _whole(self.threads, 1):
            raise OptionError("threads", f"must be a whole number >= 1 or None, got {self.threads!r}")
        if not _whole(self.max_pixels, self.crop_size * self.crop_size):
            raise OptionError(
                "max_pixels", f"must be at least one crop ({self.crop_size**2} px), got {self.max_pixels!r}"
            )

    @property
    def max_seconds(self) -> float | None:
        return None if self.max_minutes is None else self.max_minutes * 60.0

    def replace(self, **changes) -> AdaptSettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, settings: AdaptSettings | dict | None = None, **overrides) -> AdaptSettings:
        """``settings`` (an instance, a mapping or None) with ``overrides`` applied; unknown names raise TypeError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((set(overrides) | set(settings if isinstance(settings, dict) else ())) - names)
        if unknown:
            raise TypeError(
                f"unknown adaptation setting(s) {', '.join(unknown)}; settings are {', '.join(sorted(names))}"
            )
        if settings is None:
            base = cls(**overrides)
            return base
        if isinstance(settings, dict):
            return cls(**{**settings, **overrides})
        if not isinstance(settings, cls):
            raise TypeError(f"settings must be an AdaptSettings, a dict or None, got {type(settings).__name__}")
        return settings.replace(**overrides) if overrides else settings

    def as_record(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, other: AdaptSettings, *, ignore=RESUMABLE_FIELDS) -> list[str]:
        """Fields (outside ``ignore``) whose values differ from ``other``."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]
