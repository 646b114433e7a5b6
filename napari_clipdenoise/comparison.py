"""The computation behind the comparison widget: noise at several levels, several methods, metrics.

Plain numpy/core code run inside a napari thread worker (no Qt). Images are on
the [0, 1] scale, 2D (Y, X) or colour (Y, X, 3).

Seeding: the noisy image for the i-th level is
``add_noise(clean, kind, level, rng=np.random.default_rng([seed, i]))``, so the
same settings give the same pixels and numbers on every run and machine.
Denoised images are clipped to [0, 1] before the metrics (as the paper's
evaluation does); the noisy inputs are measured as the methods receive them
(unclipped for the Gaussian models). The layers show exactly the arrays that
were measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from .errors import DenoiseCancelled
from .inference.options import InferenceOptions
from .jobs import JobOutcome, Progress, iterate_progress

#: Method names for CLIP models are ``CLIP_PREFIX + <registry name or checkpoint path>``.
CLIP_PREFIX = "clip:"
NOISY = "noisy input"


@dataclass(frozen=True)
class CompareSettings:
    """One comparison: noise model and levels (with a reference), methods, seed and CLIP tiling."""

    methods: tuple[str, ...]
    noise: str = "gaussian"
    levels: tuple[float, ...] = (15.0, 25.0, 50.0)
    seed: int = 0
    rgb: bool = False
    options: InferenceOptions = field(default_factory=InferenceOptions)  # how the models run (tiling, device...)


@dataclass
class MethodRun:
    """One method on one input: the output (clipped to [0, 1]) and, with a reference, its scores."""

    method: str
    level: float | None
    output: np.ndarray
    seconds: float
    psnr: float | None = None
    ssim: float | None = None
    residual_sigma: float | None = None  # std of input - output, 0-255 scale (no-reference mode)


@dataclass
class CompareResults:
    """Everything one comparison produced."""

    settings: CompareSettings
    noisy: dict[float, np.ndarray] = field(default_factory=dict)  # level -> noisy input (reference mode)
    runs: list[MethodRun] = field(default_factory=list)
    estimated_sigma: float | None = None  # of the input, 0-255 scale (no-reference mode)
    input: np.ndarray | None = None  # the noisy input (no-reference mode)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(run.method for run in self.runs))


def method_label(method: str) -> str:
    """Short display name: ``clip:/a/b/model.safetensors`` -> ``CLIP model``; ``nl_means`` as is."""
    if method.startswith(CLIP_PREFIX):
        source = method[len(CLIP_PREFIX) :]
        return "CLIP " + source.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return method


def noisy_input(clean01: np.ndarray, settings: CompareSettings, index: int) -> np.ndarray:
    """The seeded noisy version of ``clean01`` at ``settings.levels[index]``."""
    from .noise import add_noise

    rng = np.random.default_rng([int(settings.seed), int(index)])
    channel_axis = -1 if settings.rgb else None
    return add_noise(clean01, settings.noise, settings.levels[index], rng=rng, channel_axis=channel_axis)


def scores(clean01: np.ndarray, output01: np.ndarray, *, rgb: bool) -> tuple[float, float]:
    """(PSNR dB, SSIM) with the core metrics on the [0, 1] scale."""
    from .metrics import psnr, ssim

    channel_axis = -1 if rgb else None
    return psnr(clean01, output01, data_range=1.0), ssim(clean01, output01, data_range=1.0, channel_axis=channel_axis)


def compare_job(
    image01: np.ndarray,
    settings: CompareSettings,
    cancel: threading.Event,
    *,
    reference: bool = True,
    models: dict | None = None,
) -> Generator[Progress, None, JobOutcome]:
    """The worker's generator.

    Parameters
    ----------
    image01 : ndarray
        The clean reference (``reference=True``) or the noisy image to denoise
        as it is (``reference=False``), on [0, 1].
    settings : CompareSettings
    cancel : threading.Event
        Checked between steps and inside CLIP tiling; cancelling returns ``JobOutcome(cancelled=True)``.
    models : dict, optional
        Already loaded models by source (filled in with the ones loaded here; returned in ``info``).

    Returns
    -------
    JobOutcome with a :class:`CompareResults` value.
    """
    models = dict(models or {})
    results = CompareResults(settings)
    levels = settings.levels if reference else (None,)
    total = len(levels) * (len(settings.methods) + (1 if reference else 0))
    step = 0
    try:
        if not settings.methods:
            raise ValueError("pick at least one method to compare")
        # load the CLIP models first, so the times in the table are denoising times only
        for method in settings.methods:
            source = method[len(CLIP_PREFIX) :] if method.startswith(CLIP_PREFIX) else None
            if source is not None and source not in models:
                yield Progress(step, total, f"loading {method_label(method)}")
                from .model.registry import load_model

                models[source] = load_model(source)
            if cancel.is_set():
                raise DenoiseCancelled("comparison was cancelled")
        if not reference:
            from .noise import estimate_noise_sigma

            results.input = image01
            results.estimated_sigma = 255.0 * estimate_noise_sigma(image01, channel_axis=-1 if settings.rgb else None)
        for index, level in enumerate(levels):
            if reference:
                yield Progress(step, total, f"adding {settings.noise} noise, level {level:g}")
                noisy = noisy_input(image01, settings, index)
                results.noisy[level] = noisy
                noisy_psnr, noisy_ssim = scores(image01, noisy, rgb=settings.rgb)
                results.runs.append(MethodRun(NOISY, level, noisy, 0.0, noisy_psnr, noisy_ssim))
                step += 1
            else:
                noisy = image01
            # a known noise sigma for white Gaussian noise; the classical methods estimate it otherwise
            sigma = level / 255.0 if reference and settings.noise == "gaussian" else None
            for method in settings.methods:
                if cancel.is_set():
                    raise DenoiseCancelled("comparison was cancelled")
                caption = f"{method_label(method)}" + (f", level {level:g}" if level is not None else "")
                yield Progress(step, total, caption)
                started = time.perf_counter()
                if method.startswith(CLIP_PREFIX):
                    output = yield from _run_clip(noisy, method[len(CLIP_PREFIX) :], settings, cancel, models, caption)
                else:
                    output = yield from _run_classical(noisy, method, sigma, settings, cancel, caption)
                seconds = time.perf_counter() - started
                output = np.clip(output.astype(np.float32, copy=False), 0.0, 1.0)
                run = MethodRun(method, level, output, seconds)
                if reference:
                    run.psnr, run.ssim = scores(image01, output, rgb=settings.rgb)
                else:
                    run.residual_sigma = 255.0 * float(np.std(noisy.astype(np.float64) - output))
                results.runs.append(run)
                step += 1
        yield Progress(step, total, "done")
    except DenoiseCancelled:
        return JobOutcome(cancelled=True, info={"models": models})
    except Exception as exc:  # shown by the widget
        return JobOutcome(error=exc, info={"models": models})
    if cancel.is_set():
        return JobOutcome(cancelled=True, info={"models": models})
    return JobOutcome(results, info={"models": models})


def _run_clip(noisy, source, settings, cancel, models, caption):
    from .inference.pipeline import denoise

    model = models[source]
    axes = "YXC" if settings.rgb else "YX"

    def call(progress):
        return denoise(
            noisy.astype(np.float32, copy=False),
            model,
            axes=axes,
            rgb=settings.rgb,
            options=settings.options,
            intensity_range=(0.0, 1.0),
            output_dtype=np.float32,
            progress=progress,
            cancel=cancel,
        )

    output = yield from _relabel(iterate_progress(call, message=caption, cancel=cancel), caption, tiles=True)
    return output


def _run_classical(noisy, method, sigma, settings, cancel, caption):
    from .baselines import classical_denoise

    def call(_progress):
        return classical_denoise(noisy, method, sigma=sigma, channel_axis=-1 if settings.rgb else None)

    output = yield from _relabel(iterate_progress(call, message=caption, cancel=cancel), caption, tiles=False)
    return output


def _relabel(inner, caption, *, tiles):
    """Forward an inner generator's reports as sub-step captions (the overall step count stays put)."""
    try:
        while True:
            try:
                report = next(inner)
            except StopIteration as stop:
                return stop.value
            if tiles and report.total:
                yield Progress(-1, -1, f"{caption}: tile {report.done}/{report.total}")
    finally:
        inner.close()  # closed early: stops the helper thread (no-op when it has finished)
