"""``adapt``: fine-tune a CLIPDenoiser on the user's own noisy images, without clean targets.

One step: draw crops (:mod:`.sampling`), hide a stratified fraction of their
pixels behind random visible neighbours (:mod:`.masking`), run the network on
the masked crops and take the squared error only at the hidden pixels, against
their original noisy values. For noise that is independent from pixel to pixel
the best prediction of a hidden value from its surroundings is the clean value,
so the loss teaches denoising, and since the hidden value is nowhere in the
input (not in f0, not in the encoder's input) it cannot teach the identity.

The encoder stays frozen in eval mode (its BatchNorm statistics are the
checkpoint's); only the last ``decoder_stages`` decoder blocks and the output
convolution learn. A held-out set of crops with fixed masks measures the masked
loss every ``validate_every`` steps; the best evaluation's weights are the
result (the base model's own loss is the first evaluation, so a run that does
not help returns the base weights and says so in its provenance).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AdaptCancelled, CheckpointError
from ..inference.options import InferenceOptions
from ..inference.tiling import as_cancel_check
from ..model.network import CLIPDenoiser, NetworkConfig
from .masking import MaskPlan, draw_mask
from .sampling import CropSampler, TrainingData, prepare_data
from .settings import AdaptSettings

STATE_FORMAT = "napari-clipdenoise-adapt-state"
STATE_VERSION = 1
#: The learning-rate schedule's shape: constant for the first half, then a cosine to lr / 100.
SCHEDULE_UNITS = 1000


class AdaptError(ValueError):
    """Adaptation cannot start or continue (the message says why and what to do)."""


@dataclass(frozen=True)
class AdaptProgress:
    """One progress report of :func:`adapt`.

    ``phase`` is ``"preparing"`` (data read, before the first step), ``"training"``
    (after a step), ``"validating"`` (after a held-out evaluation) or ``"finished"``.
    """

    phase: str
    step: int
    total_steps: int | None
    elapsed_s: float
    budget_s: float | None
    loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None

    @property
    def fraction(self) -> float:
        """How much of the budget is used, 0..1 (the larger of steps and time)."""
        return _budget_fraction(self.step, self.elapsed_s, self.total_steps, self.budget_s)


def _budget_fraction(step: int, elapsed: float, steps: int | None, seconds: float | None) -> float:
    parts = []
    if steps:
        parts.append(step / steps)
    if seconds:
        parts.append(elapsed / seconds)
    return min(1.0, max(parts)) if parts else 0.0


def learning_rate(fraction: float, lr: float) -> float:
    """The rate for a run that has used ``fraction`` of its budget (training/schedule.py's cosine)."""
    from ..training.schedule import lr_at

    unit = min(SCHEDULE_UNITS, max(1, math.ceil(fraction * SCHEDULE_UNITS)))
    half = SCHEDULE_UNITS // 2
    return lr_at(unit, lr, (half, SCHEDULE_UNITS - half), (lr, lr / 100.0))


# --------------------------------------------------------------------------- the model
def base_model(model):
    """Load ``model`` and check that adaptation supports it (the CLIP family only)."""
    from ..model.registry import REGISTRY, load_model

    if isinstance(model, (str, os.PathLike)):
        entry = REGISTRY.get(os.fspath(model))
        family = getattr(entry, "family", "clip") if entry is not None else "clip"
        if family != "clip":
            raise AdaptError(
                f"model {os.fspath(model)!r} is of the {family!r} family; adaptation fine-tunes CLIPDenoiser models"
                " (family 'clip') only: pick a CLIP model such as gaussian15"
            )
    try:
        loaded = load_model(model)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot adapt this model: {exc}") from exc
    if not isinstance(loaded.network, CLIPDenoiser):
        family = loaded.metadata.get("family") or type(loaded.network).__name__
        raise AdaptError(
            f"model {loaded.name!r} is a {family} network, not a CLIPDenoiser; adaptation fine-tunes CLIPDenoiser"
            " models (family 'clip') only"
        )
    return loaded


def trainable_network(base: CLIPDenoiser, settings: AdaptSettings) -> CLIPDenoiser:
    """A copy of ``base`` ready to fine-tune: encoder frozen in eval mode, the last decoder blocks trainable."""
    network = copy.deepcopy(base)  # the caller's model stays as it is
    network.config = NetworkConfig.from_dict({**base.config.to_dict(), "feature_aug_level": settings.feature_aug_level})
    network.feature_aug_level = settings.feature_aug_level
    network.encoder_bn_mode = "frozen"  # train() keeps the encoder (and its BN statistics) in eval mode
    network.requires_grad_(False)
    for block in network.up_path[len(network.up_path) - settings.decoder_stages :]:
        block.requires_grad_(True)
    network.last.requires_grad_(True)
    return network


def trained_parameters(network: CLIPDenoiser) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in network.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- the loss
def predict(network: CLIPDenoiser, inputs: torch.Tensor, replicate: bool) -> torch.Tensor:
    """The network's output for crops on the [0, 1] scale, channel handling as ``denoise`` does it."""
    if replicate:
        return network(inputs.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
    return network(inputs)


def masked_predictions(network: CLIPDenoiser, crops: torch.Tensor, plan: MaskPlan, replicate: bool):
    """``(predicted, noisy)`` values at the plan's centres, the network having seen only the masked crops.

    This is the one place the network meets the training data: the masked copy
    of ``crops`` is its whole input, so the hidden values reach neither the
    encoder nor the decoder's raw-image skip f0.
    """
    output = predict(network, plan.apply(crops), replicate)
    index = tuple(torch.as_tensor(a, device=crops.device) for a in plan.centres)
    # advanced indices around a slice: shape (centres, channels) on both sides
    return output[index[0], :, index[1], index[2]], crops[index[0], :, index[1], index[2]]


def masked_loss(network: CLIPDenoiser, crops: torch.Tensor, plan: MaskPlan, replicate: bool) -> torch.Tensor:
    """Mean squared error at the hidden pixels against their noisy values (fp32)."""
    predicted, noisy = masked_predictions(network, crops, plan, replicate)
    return torch.mean((predicted.float() - noisy.float()) ** 2)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Validation:
    """Held-out crops with fixed masks; ``loss(network)`` is their masked loss in eval mode."""

    def __init__(self, crops: np.ndarray, settings: AdaptSettings, device: torch.device, replicate: bool):
        self.crops = torch.from_numpy(crops).to(device)
        self.batch = settings.batch_size
        self.replicate = replicate
        self.precision = settings.precision
        self.plans = []
        rng = np.random.default_rng([settings.seed, 2])
        for start in range(0, len(crops), self.batch):
            count = min(self.batch, len(crops) - start)
            self.plans.append(draw_mask(count, crops.shape[2], crops.shape[3], rng, **_mask_kwargs(settings)))

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def loss(self, network: CLIPDenoiser) -> float | None:
        if not len(self):
            return None
        was_training = network.training
        network.eval()
        total, count = 0.0, 0
        with torch.no_grad(), _autocast(self.crops.device, self.precision):
            for index, plan in enumerate(self.plans):
                crops = self.crops[index * self.batch : index * self.batch + plan.shape[0]]
                predicted, noisy = masked_predictions(network, crops, plan, self.replicate)
                total += float(torch.sum((predicted.float() - noisy.float()) ** 2))
                count += predicted.numel()
        network.train(was_training)
        return total / count


def _mask_kwargs(settings: AdaptSettings) -> dict:
    return {
        "fraction": settings.mask_fraction,
        "neighbourhood": settings.neighbourhood,
        "structured_axis": settings.structured_axis,
        "structured_length": settings.structured_length,
    }


# --------------------------------------------------------------------------- state
def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def read_state(path: str | os.PathLike) -> dict:
    """A resumable adaptation state written by :func:`adapt` (``weights_only``: tensors and plain data)."""
    path = Path(path)
    if not path.is_file():
        raise AdaptError(f"no adaptation state at {path}; start without resume, or give the state file of the run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AdaptError(f"could not read the adaptation state {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise AdaptError(f"{path} is not a napari-clipdenoise adaptation state")
    if state.get("version") != STATE_VERSION:
        raise AdaptError(f"{path} is an adaptation state of version {state.get('version')}, this is {STATE_VERSION}")
    return state


@dataclass
class _Run:
    """Everything that changes during a run (and is saved in the state file)."""

    step: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    curve_step: list = None
    curve_loss: list = None
    val_step: list = None
    val_loss: list = None
    best_loss: float | None = None
    best_step: int = 0
    best_weights: dict | None = None
    stale: int = 0  # evaluations since the last improvement
    resumed: int = 0
    stopped: str = ""

    def __post_init__(self):
        for name in ("curve_step", "curve_loss", "val_step", "val_loss"):
            if getattr(self, name) is None:
                setattr(self, name, [])


# --------------------------------------------------------------------------- adapt
def _check_destinations(name, output, overwrite) -> tuple[Path | None, Path | None]:
    from ..model.registry import BUNDLED, REGISTRY, installed_path
    from ..model.sources import validate_model_name

    installed = None
    if name is not None:
        validate_model_name(name)
        if name in REGISTRY or name in BUNDLED:
            raise AdaptError(
                f"{name!r} is the registry's name for a published model; install the adapted model under a name"
                " of its own, e.g. my_scope"
            )
        installed = installed_path(name)
        if installed.exists() and not overwrite:
            raise FileExistsError(
                f"a model named {name!r} is already installed at {installed}; choose another name or pass"
                " overwrite=True (--overwrite)"
            )
    path = Path(output).expanduser() if output is not None else None
    if path is not None:
        if path.suffix.lower() != ".safetensors":
            raise AdaptError(f"output {path} must be a .safetensors file (the project format)")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; choose another file or pass overwrite=True (--overwrite)")
    return installed, path


def adapt(
    images,
    model,
    *,
    axes=None,
    rgb=None,
    options: InferenceOptions | dict | None = None,
    settings: AdaptSettings | dict | None = None,
    name: str | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    state: str | os.PathLike | None = None,
    resume: bool = False,
    progress: Callable[[AdaptProgress], None] | None = None,
    cancel=None,
    **setting_overrides,
):
    """Fine-tune a CLIPDenoiser on noisy images alone (masked-pixel self-supervision).

    Parameters
    ----------
    images : array-like or list of array-likes
        Noisy 2D images, stacks or multichannel data (numpy, dask or zarr; any
        integer or float dtype), each with at least ``crop_size`` pixels along Y and X.
    model : DenoisingModel, str or path
        The base model: a CLIP-family registry/installed name, a checkpoint path or a loaded model.
    axes, rgb : str/bool, or one per image
        As for :func:`~napari_clipdenoise.denoise` (guessed from the shape when omitted).
    options : InferenceOptions or dict, optional
        Of these, ``intensity_range`` (how values map to [0, 1], as ``denoise``
        does it) and ``device`` are used; tiling and precision are inference settings.
    settings : AdaptSettings or dict, optional
        Budget, crops, masking, trained stages, learning rate, early stopping,
        seed...; any field can also be given as a keyword (``steps=300``,
        ``max_minutes=5``, ``decoder_stages=3``, ``structured_axis="X"``).
    name : str, optional
        Install the result in the model cache under this name (validated like
        any model name; registry names are refused), so ``-m NAME``, ``denoise``
        and the widgets find it.
    output : path, optional
        Also (or instead) write the project-format ``.safetensors`` file here.
    overwrite : bool
        Replace an installed model / output file of that name.
    state : path, optional
        Resumable state file, written every ``validate_every`` steps, when the
        run is cancelled or interrupted, and at the end.
    resume : bool
        Continue the run saved in ``state``: the same images, base model and
        settings (only ``steps``, ``max_minutes`` and ``threads`` may change, e.g.
        to extend the budget). A run with a step budget resumes exactly: N steps,
        cancelled and resumed, give the same weights as N steps in one go (with
        the same thread count); a time budget is, by nature, not reproducible.
    progress : callable(AdaptProgress), optional
        Called before the first step, after every step and evaluation, and at the end.
    cancel : callable or threading.Event, optional
        Checked before every step. When it fires the state is saved (if
        ``state`` is given), nothing is installed or written, and
        :class:`~napari_clipdenoise.errors.AdaptCancelled` (a ``DenoiseCancelled``)
        is raised; its ``state_path`` resumes the run. Ctrl-C (KeyboardInterrupt)
        saves the state likewise and propagates.

    Returns
    -------
    DenoisingModel
        The adapted model (in eval mode). Its ``metadata`` is what the checkpoint
        holds: ``adapted_from`` (base name, weights sha256, file) and
        ``adaptation`` (data fingerprint, images, settings, steps, stop reason,
        best step, loss curve, time).

    Raises
    ------
    ValueError
        Bad settings (``OptionError`` naming the field), images too small for a
        crop, NaN/inf values, no data, a bad model name.
    CheckpointError
        The model file is not a CLIPDenoiser checkpoint.
    AdaptError
        A model of another family, a state that does not belong to this run.
    FileExistsError
        The name is installed / the output exists, without ``overwrite``.
    AdaptCancelled
        ``cancel`` fired.
    """
    settings = AdaptSettings.build(settings, **setting_overrides)
    options = InferenceOptions.build(options)
    installed, output_path = _check_destinations(name, output, overwrite)
    state_path = Path(state).expanduser() if state is not None else None
    if resume and state_path is None:
        raise AdaptError("resume=True needs state=PATH, the state file of the run to continue")
    saved = read_state(state_path) if resume else None
    base = base_model(model)
    from ..model.checkpoints import state_dict_sha256

    base_sha = state_dict_sha256(base.network.state_dict())
    threads_before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            return _run(
                images,
                base,
                base_sha,
                axes=axes,
                rgb=rgb,
                options=options,
                settings=settings,
                name=name,
                installed=installed,
                output_path=output_path,
                state_path=state_path,
                saved=saved,
                progress=progress,
                cancel=cancel,
            )
    finally:
        torch.set_num_threads(threads_before)


def _run(images, base, base_sha, *, axes, rgb, options, settings, name, installed, output_path, state_path, saved,
         progress, cancel):  # fmt: skip
    from ..inference.device import resolve_device

    started = time.perf_counter()
    should_stop = as_cancel_check(cancel)
    device = resolve_device(options.device)
    data = prepare_data(
        images,
        base.in_channels,
        axes=axes,
        rgb=rgb,
        options=options,
        crop_size=settings.crop_size,
        max_pixels=settings.max_pixels,
    )
    sampler = CropSampler(
        data,
        settings.crop_size,
        validation_fraction=settings.validation_fraction,
        max_validation=settings.max_validation_crops,
        seed=settings.seed,
    )
    network = trainable_network(base.network, settings).to(device).train()
    parameters = trained_parameters(network)
    optimizer = torch.optim.AdamW(list(parameters.values()), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng([settings.seed, 0])
    validation = _Validation(sampler.validation_crops(), settings, device, data.replicate)
    run = _Run()
    if saved is not None:
        _restore(saved, run, settings, base_sha, data, network, optimizer, rng)
    prepare_s = time.perf_counter() - started

    def save_state(status: str) -> None:
        if state_path is None:
            return
        _atomic_save(
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "status": status,
                "settings": settings.as_record(),
                "base_sha256": base_sha,
                "base_name": base.name,
                "data_fingerprint": data.fingerprint,
                "parameters": {k: v.detach().cpu().clone() for k, v in parameters.items()},
                "optimizer": optimizer.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "run": {
                    "step": run.step,
                    "elapsed": run.elapsed,
                    "cpu": run.cpu,
                    "curve_step": run.curve_step,
                    "curve_loss": run.curve_loss,
                    "val_step": run.val_step,
                    "val_loss": run.val_loss,
                    "best_loss": run.best_loss,
                    "best_step": run.best_step,
                    "stale": run.stale,
                    "resumed": run.resumed,
                },
                "best_weights": run.best_weights,
            },
            state_path,
        )

    def report(phase: str, loss=None) -> None:
        if progress is not None:
            latest = run.val_loss[-1] if run.val_loss else None
            progress(
                AdaptProgress(
                    phase, run.step, settings.steps, run.elapsed, settings.max_seconds, loss, latest, run.best_loss
                )
            )

    def evaluate() -> None:
        value = validation.loss(network)
        if value is None:
            return
        run.val_step.append(run.step)
        run.val_loss.append(value)
        if run.best_loss is None or value < run.best_loss * (1 - 1e-4):
            run.best_loss, run.best_step, run.stale = value, run.step, 0
            run.best_weights = {k: v.detach().cpu().clone() for k, v in parameters.items()}
        else:
            run.stale += 1

    if saved is None:
        evaluate()  # step 0: the base model's own masked loss
    report("preparing")
    began, cpu_began = time.perf_counter() - run.elapsed, time.process_time() - run.cpu
    autocast = _autocast(device, settings.precision)
    try:
        while True:
            run.elapsed, run.cpu = time.perf_counter() - began, time.process_time() - cpu_began
            if settings.steps is not None and run.step >= settings.steps:
                run.stopped = "steps"
                break
            if settings.max_seconds is not None and run.elapsed >= settings.max_seconds:
                run.stopped = "time"
                break
            if len(validation) and settings.patience and run.stale >= settings.patience:
                run.stopped = "early_stopping"
                break
            if should_stop():
                save_state("cancelled")
                raise AdaptCancelled(
                    f"adaptation was cancelled at step {run.step}; nothing was installed"
                    + (f" (resume from {state_path})" if state_path is not None else ""),
                    state_path,
                )
            fraction = _budget_fraction(run.step, run.elapsed, settings.steps, settings.max_seconds)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(fraction, settings.lr)
            crops = sampler.training_batch(rng, settings.batch_size, keep_axes=settings.structured_axis is not None)
            plan = draw_mask(len(crops), crops.shape[2], crops.shape[3], rng, **_mask_kwargs(settings))
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = masked_loss(network, torch.from_numpy(crops).to(device), plan, data.replicate)
            if not torch.isfinite(loss):
                raise AdaptError(f"the loss became {float(loss)} at step {run.step + 1}; lower lr or use fp32")
            loss.backward()
            optimizer.step()
            run.step += 1
            run.curve_step.append(run.step)
            run.curve_loss.append(float(loss.detach()))
            run.elapsed, run.cpu = time.perf_counter() - began, time.process_time() - cpu_began
            report("training", run.curve_loss[-1])
            if run.step % settings.validate_every == 0:
                evaluate()
                save_state("running")
                report("validating", run.curve_loss[-1])
    except KeyboardInterrupt:
        save_state("interrupted")
        raise
    if len(validation) and (not run.val_step or run.val_step[-1] != run.step):
        evaluate()
    save_state("finished")  # with the last step's weights, so that a larger budget continues from them
    if run.best_weights is not None:  # the best evaluation's weights are the result
        with torch.no_grad():
            for key, value in run.best_weights.items():
                parameters[key].copy_(value.to(device))
    network.eval()
    metadata = _metadata(base, base_sha, data, sampler, settings, options, run, device, name, parameters, prepare_s)
    path = None
    for target in (output_path, installed):
        if target is not None:
            from ..model.checkpoints import save_checkpoint

            save_checkpoint(network, target, metadata)  # atomic: a temporary file and a rename
            path = path or target
    report("finished", run.curve_loss[-1] if run.curve_loss else None)
    from ..model.registry import DenoisingModel

    return DenoisingModel(network, metadata["name"], metadata, installed or output_path)


def _restore(saved: dict, run: _Run, settings, base_sha, data: TrainingData, network, optimizer, rng) -> None:
    previous = AdaptSettings(**saved["settings"])
    changed = settings.differences(previous)
    if changed:
        raise AdaptError(
            f"the saved run used different settings ({', '.join(changed)}); only steps, max_minutes and threads may"
            " change when resuming. Start a new run instead"
        )
    if saved["base_sha256"] != base_sha:
        raise AdaptError(
            f"the saved run adapted another base model ({saved.get('base_name')!r}, weights sha256"
            f" {saved['base_sha256'][:12]}...); resume with the same model"
        )
    if saved["data_fingerprint"] != data.fingerprint:
        raise AdaptError(
            "the images differ from those of the saved run (their fingerprint changed); resume with the same"
            " images, axes and intensity range, or start a new run"
        )
    values = saved["run"]
    if settings.steps is not None and values["step"] >= settings.steps and saved.get("status") == "finished":
        raise AdaptError(
            f"the saved run already did {values['step']} steps; pass a larger steps (--steps) to continue it"
        )
    with torch.no_grad():
        for key, parameter in trained_parameters(network).items():
            parameter.copy_(saved["parameters"][key].to(parameter.device))
    optimizer.load_state_dict(saved["optimizer"])
    rng.bit_generator.state = saved["rng"]
    torch.set_rng_state(saved["torch_rng"])
    for key in ("step", "elapsed", "cpu", "curve_step", "curve_loss", "val_step", "val_loss", "best_loss",
                "best_step", "stale"):  # fmt: skip
        setattr(run, key, values[key])
    run.resumed = int(values.get("resumed", 0)) + 1
    run.best_weights = saved.get("best_weights")


def _metadata(base, base_sha, data, sampler, settings, options, run, device, name, parameters, prepare_s) -> dict:
    from ..model.checkpoints import file_sha256

    adapted_from = {"name": base.name, "weights_sha256": base_sha, "noise": base.metadata.get("noise")}
    if base.path is not None and Path(base.path).is_file():
        adapted_from["file"] = str(base.path)
        adapted_from["file_sha256"] = file_sha256(base.path)
    random_encoder = bool(base.metadata.get("random_encoder") or base.metadata.get("random_weights"))
    if random_encoder:
        adapted_from["random_encoder"] = True
    images = len(data.sources)
    stopped = {
        "steps": "step budget reached",
        "time": "time budget reached",
        "early_stopping": f"no improvement of the held-out loss in {settings.patience} evaluations",
    }[run.stopped]
    title = name or f"{base.name}-adapted"
    return {
        "name": title,
        "description": (
            f"{base.name} adapted to {images} noisy image(s) by masked-pixel self-supervision"
            f" ({run.step} steps, best at step {run.best_step})"
        ),
        "noise": f"self-supervised adaptation to the user's noisy images (data {data.fingerprint[:12]});"
        f" base model: {base.metadata.get('noise', base.name)}",
        "family": "clip",
        "random_encoder": random_encoder,
        "adapted_from": adapted_from,
        "adaptation": {
            "method": "masked-pixel self-supervision (Noise2Void family): loss only at hidden pixels",
            "data": {
                "fingerprint": data.fingerprint,
                "images": data.sources,
                "arrays": len(data.planes),
                "pixels": data.pixels,
                "training_tiles": len(sampler.training_tiles),
                "held_out_crops": len(sampler.validation_tiles),
            },
            "settings": settings.as_record(),
            "intensity_range": options.as_record()["intensity_range"],
            "steps": run.step,
            "stopped": run.stopped,
            "stop_reason": stopped,
            "best_step": run.best_step,
            "best_val_loss": run.best_loss,
            "base_val_loss": run.val_loss[0] if run.val_loss and run.val_step[0] == 0 else None,
            "elapsed_s": round(run.elapsed, 3),
            "cpu_s": round(run.cpu, 3),
            "prepare_s": round(prepare_s, 3),
            "threads": torch.get_num_threads(),
            "device": str(device),
            "resumed": run.resumed,
            "trained_parameters": sorted({k.rsplit(".conv_block", 1)[0].split(".weight")[0] for k in parameters}),
            "trained_parameter_count": int(sum(p.numel() for p in parameters.values())),
            "loss_curve": {
                "step": run.curve_step,
                "loss": run.curve_loss,
                "val_step": run.val_step,
                "val_loss": run.val_loss,
            },
        },
    }
