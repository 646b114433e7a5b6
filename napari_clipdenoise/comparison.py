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

Methods are classical names (``nl_means``...) or ``MODEL_PREFIX + <source>``,
where the source is anything ``load_model`` takes: a registry, installed or
bundled model name, or a checkpoint path. Nothing here knows model families:
a bundled or newly registered model is compared like any other.
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

#: Method names for denoising models are ``MODEL_PREFIX + <name or checkpoint path>``.
MODEL_PREFIX = "model:"
CLIP_PREFIX = MODEL_PREFIX  # the older name of the same prefix
NOISY = "noisy input"
#: The clean reference as a column of the comparison (not a method).
CLEAN = "clean"
#: Above this estimated noise sigma (0-255 scale) an image given as the clean reference looks noisy:
#: clean photographs and the sample references measure 0.4-2.1, the noisy samples 6-24.
NOISY_REFERENCE_SIGMA = 4.0
#: How each noise model's level is written in short labels (layer names, table headers).
LEVEL_SYMBOLS = {
    "gaussian": "σ",
    "spatial_gaussian": "σ",
    "poisson": "scale",
    "poisson_peak": "peak",
    "speckle": "σ",
    "salt_pepper": "p",
}
#: Scores the table can show: key -> (header, attribute of MethodRun, decimals, larger is better).
METRICS = {
    "psnr": ("PSNR (dB)", "psnr", 2, True),
    "ssim": ("SSIM", "ssim", 4, True),
    "seconds": ("Time (s)", "seconds", 2, False),
}


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
    clean: np.ndarray | None = None  # the reference (reference mode)
    reference_sigma: float | None = None  # estimated noise sigma of the reference, 0-255 scale

    @property
    def reference(self) -> bool:
        return self.input is None

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(run.method for run in self.runs))


def is_model(method: str) -> bool:
    """Whether ``method`` names a denoising model (rather than a classical method)."""
    return method.startswith(MODEL_PREFIX)


def model_method(source) -> str:
    """The method name of a model source (a name or a checkpoint path)."""
    import os

    return MODEL_PREFIX + os.fspath(source)


def model_source(method: str) -> str:
    """The ``load_model`` source of a model method."""
    return method[len(MODEL_PREFIX) :]


def method_label(method: str) -> str:
    """Short display name: a model's name (a file's stem), a classical method's name, ``noisy``."""
    if method == NOISY:
        return "noisy"
    if is_model(method):
        return model_source(method).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return method


def method_labels(methods) -> dict[str, str]:
    """Labels for several methods, unique: a file whose stem repeats another label keeps its file name."""
    labels = {method: method_label(method) for method in methods}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    for method, label in labels.items():
        if counts[label] > 1 and is_model(method) and _looks_like_file(model_source(method)):
            labels[method] = model_source(method).replace("\\", "/").rsplit("/", 1)[-1]
    return labels


def _looks_like_file(source: str) -> bool:
    from .model.sources import looks_like_path

    return looks_like_path(source)


def level_label(noise: str, level: float) -> str:
    """``("gaussian", 25.0)`` -> ``"σ=25"``; ``("poisson_peak", 30)`` -> ``"peak=30"``."""
    return f"{LEVEL_SYMBOLS.get(noise, 'level')}={level:g}"


def layer_name(results: CompareResults, run_or_role, level: float | None = None) -> str:
    """The name of a comparison layer: ``"σ=25 · tv"``, ``"σ=25 · clean"``; without reference ``"tv"``.

    ``run_or_role`` is a :class:`MethodRun`, or ``CLEAN`` / ``"input"`` / ``"residual:<method>"``.
    The level comes first and the names stay short, so grid cells and the layer
    list show what tells them apart.
    """
    labels = method_labels(results.settings.methods)
    if isinstance(run_or_role, MethodRun):
        label = labels.get(run_or_role.method, method_label(run_or_role.method))
        level = run_or_role.level
    elif run_or_role.startswith("residual:"):
        method = run_or_role[len("residual:") :]
        return f"{labels.get(method, method_label(method))} · residual"
    elif run_or_role == "input":
        return "noisy input"
    else:
        label = run_or_role
    if level is None:
        return label
    return f"{level_label(results.settings.noise, level)} · {label}"


def grid_shape(results: CompareResults, canvas: tuple[float, float] | None = None) -> tuple[tuple[int, int], bool]:
    """The comparison's grid: ``((rows, columns), transposed)``.

    With a reference the grid is levels x (clean, noisy, methods): one row per
    level, or, when ``transposed``, one column per level. ``canvas`` (height,
    width in pixels) picks the orientation whose cells are larger (square
    images fill a cell up to its shorter side), wider cells on a tie, so names
    fit. Without a reference: one row, the noisy input then each method.
    """
    methods = len(results.settings.methods)
    if not results.reference:
        return (1, methods + 1), False
    levels, columns = len(results.settings.levels), methods + 2
    if canvas is None:
        return (levels, columns), False
    height, width = (float(v) for v in canvas)

    def cell(rows, cols):
        return (min(height / rows, width / cols), width / cols)

    transposed = cell(columns, levels) > cell(levels, columns)
    return ((columns, levels) if transposed else (levels, columns)), transposed


def score_grid(results: CompareResults, metric: str = "psnr"):
    """A method x level table of one score: ``(row labels, column labels, values, best)``.

    Rows are the noisy input and the methods; columns the levels (``"σ=25"``).
    ``values[r][c]`` is a float or None; ``best[c]`` is the row index of the best
    method at that level (the noisy input excluded), or None.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}; got {metric!r}")
    _, attribute, _, larger_better = METRICS[metric]
    levels = list(results.settings.levels)
    methods = [NOISY, *results.settings.methods]
    labels = method_labels(results.settings.methods)
    by_key = {(run.method, run.level): run for run in results.runs}
    values = []
    for method in methods:
        row = []
        for level in levels:
            run = by_key.get((method, level))
            value = getattr(run, attribute) if run is not None else None
            row.append(None if method == NOISY and metric == "seconds" else value)
        values.append(row)
    best = []
    for column in range(len(levels)):
        scored = [(values[r][column], r) for r in range(1, len(methods)) if values[r][column] is not None]
        if not scored:
            best.append(None)
            continue
        best.append((max if larger_better else min)(scored)[1])
    row_labels = ["noisy"] + [labels[m] for m in results.settings.methods]
    column_labels = [level_label(results.settings.noise, level) for level in levels]
    return row_labels, column_labels, values, best


def records(results: CompareResults) -> tuple[list[str], list[list]]:
    """Every run as one row with full-precision numbers (for copying and CSV): ``(headers, rows)``."""
    labels = method_labels(results.settings.methods)
    if results.reference:
        headers = ["Method", "Noise", "Level", "PSNR (dB)", "SSIM", "Time (s)"]
        rows = [
            [labels.get(r.method, method_label(r.method)), results.settings.noise, r.level, r.psnr, r.ssim, r.seconds]
            for r in results.runs
        ]
    else:
        headers = ["Method", "Residual σ (0-255)", "Time (s)"]
        rows = [[labels.get(r.method, method_label(r.method)), r.residual_sigma, r.seconds] for r in results.runs]
    return headers, rows


def reference_sigma(image01: np.ndarray, *, rgb: bool, max_size: int | None = None) -> float:
    """Estimated noise sigma (0-255 scale) of an image meant as the clean reference.

    ``max_size`` estimates on a central crop of at most that many pixels per side
    (quick enough to run when a layer is picked).
    """
    from .noise import estimate_noise_sigma

    image = np.asarray(image01)
    if max_size:
        crop = []
        for size in image.shape[:2]:
            start = max(0, (size - max_size) // 2)
            crop.append(slice(start, start + max_size))
        image = image[tuple(crop)]
    return 255.0 * estimate_noise_sigma(image, channel_axis=-1 if rgb else None)


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
            source = model_source(method) if is_model(method) else None
            if source is not None and source not in models:
                yield Progress(step, total, f"loading model {method_label(method)}")
                from .model.registry import load_model

                models[source] = load_model(source)
            if cancel.is_set():
                raise DenoiseCancelled("comparison was cancelled")
        if reference:
            results.clean = image01
            results.reference_sigma = reference_sigma(image01, rgb=settings.rgb)
        else:
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
                if is_model(method):
                    output = yield from _run_model(noisy, model_source(method), settings, cancel, models, caption)
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


def _run_model(noisy, source, settings, cancel, models, caption):
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
