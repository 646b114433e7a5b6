"""The reference learning-rate schedule: cosine annealing over consecutive periods.

Period ``i`` (of length ``periods[i]``) anneals from the base LR to ``eta_mins[i]``
(weighted by ``restart_weights[i]``)::

    lr(t) = eta_min_i + w_i * (base - eta_min_i) * (1 + cos(pi * (t - start_i) / period_i)) / 2

with ``t`` the 1-based iteration; ``t`` belongs to the first period whose cumulative
end is >= t (as BasicSR's ``CosineAnnealingRestartCyclicLR``). The gaussian15/srgb
recipes use periods (92k, 208k) with eta_mins (3e-4, 1e-6): the first period is a
constant 3e-4 (its eta_min equals the base LR), the second a cosine down to 1e-6.
The ldct recipe is a single 40k period to 1e-6 (``TrueCosineAnnealingLR``).
After the last period the LR stays at the last eta_min.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def lr_at(
    iteration: int,
    base_lr: float,
    periods: Sequence[int],
    eta_mins: Sequence[float],
    restart_weights: Sequence[float] | None = None,
) -> float:
    """Learning rate used for 1-based ``iteration``."""
    if restart_weights is None:
        restart_weights = [1.0] * len(periods)
    start = 0
    for period, eta_min, weight in zip(periods, eta_mins, restart_weights, strict=True):
        if iteration <= start + period:
            progress = (iteration - start) / period
            return eta_min + weight * 0.5 * (base_lr - eta_min) * (1.0 + math.cos(math.pi * progress))
        start += period
    return float(eta_mins[-1])


def scaled_periods(periods: Sequence[int], iterations: int) -> list[int]:
    """Stretch ``periods`` proportionally so they sum to ``iterations`` (each at least 1)."""
    total = sum(periods)
    cumulative = [round(iterations * sum(periods[: i + 1]) / total) for i in range(len(periods))]
    out, previous = [], 0
    for end in cumulative:
        out.append(max(1, end - previous))
        previous += out[-1]
    return out


class CyclicCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """:func:`lr_at` as a torch scheduler.

    ``last_epoch`` counts the iterations done; the optimizer's LR is always the one
    for the next iteration, ``lr_at(last_epoch + 1)``. Call ``step()`` after each
    ``optimizer.step()``, as usual in torch. Its state (``last_epoch`` and the schedule numbers) is plain Python data, so it
    is saved and restored by ``state_dict``/``load_state_dict`` like any scheduler.
    """

    def __init__(self, optimizer, periods, eta_mins, restart_weights=None, last_epoch: int = -1):
        self.periods = [int(p) for p in periods]
        self.eta_mins = [float(e) for e in eta_mins]
        self.restart_weights = [float(w) for w in (restart_weights or [1.0] * len(self.periods))]
        if not (len(self.periods) == len(self.eta_mins) == len(self.restart_weights)):
            raise ValueError("periods, eta_mins and restart_weights must have the same length")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            lr_at(self.last_epoch + 1, base, self.periods, self.eta_mins, self.restart_weights)
            for base in self.base_lrs
        ]
