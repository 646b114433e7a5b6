"""Training augmentations of the reference: 8 flip/rotate modes and mixup.

The eight geometric modes are those of the reference data loaders
(Restormer/BasicSR ``data_augmentation``), on ``H x W (x C)`` arrays:

==== =========================================
mode operation
==== =========================================
0    identity
1    flip up-down
2    rotate 90 degrees (counter-clockwise)
3    rotate 90, then flip up-down
4    rotate 180
5    rotate 180, then flip up-down
6    rotate 270
7    rotate 270, then flip up-down
==== =========================================

Mixup (``use_identity``): with probability 1/2 per step the batch is left as is;
otherwise one ``lam ~ Beta(1.2, 1.2)`` and one permutation are drawn for the whole
batch and applied to targets and inputs alike.
"""

from __future__ import annotations

import numpy as np

N_MODES = 8


def geometric_augment(image: np.ndarray, mode: int) -> np.ndarray:
    """Apply flip/rotate ``mode`` (0..7) to the first two axes of ``image``."""
    if not 0 <= int(mode) < N_MODES:
        raise ValueError(f"mode must be an integer in 0..7, got {mode!r}")
    mode = int(mode)
    out = np.rot90(image, k=mode // 2, axes=(0, 1))
    if mode % 2:
        out = np.flipud(out)
    return out


def mixup_params(
    rng: np.random.Generator, batch_size: int, prob: float, beta: float
) -> tuple[float, np.ndarray] | None:
    """Draw whether to mix this step and, if so, ``(lam, permutation)``; None means no mixup.

    Always consumes the same number of draws for a given outcome, so the stream is
    reproducible from the generator state alone.
    """
    if prob <= 0 or rng.random() >= prob:
        return None
    lam = float(rng.beta(beta, beta))
    return lam, rng.permutation(batch_size)


def apply_mixup(target, inputs, lam: float, permutation):
    """``lam * x + (1 - lam) * x[perm]`` for targets and inputs (torch tensors or numpy arrays)."""
    index = permutation
    try:  # torch tensors need a tensor index on their device
        import torch

        if isinstance(target, torch.Tensor):
            index = torch.as_tensor(np.asarray(permutation), device=target.device)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return lam * target + (1 - lam) * target[index], lam * inputs + (1 - lam) * inputs[index]
