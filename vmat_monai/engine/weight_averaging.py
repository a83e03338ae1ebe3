"""An exponential moving average (EMA) of the network's weights during training, through Lightning's
``WeightAveraging`` callback.

With the bundle key ``ema_decay`` set (e.g. 0.999), the average is updated after every optimiser step:
``avg ← d · avg + (1 − d) · w`` with ``d = min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates (the
usual warm-up: the first, poor weights leave the average within a few hundred steps instead of lingering
for thousands, which matters in a time-budgeted run of a few thousand steps). Validation runs on the
averaged weights; every checkpoint stores them as its model (``state_dict``, which prediction loads) and
the raw weights beside them (``current_model_state``, which a resumed training continues from); the
network's ``models/model.pt`` written after training is the average. Integer and boolean buffers (a
network's ``condition_fitted`` flag) are copied, not averaged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_lightning.callbacks import WeightAveraging

__all__ = ["WarmupEMA", "ema_callback", "warmup_ema_avg_fn"]


def warmup_ema_avg_fn(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``avg_fn`` for ``torch.optim.swa_utils.AveragedModel``: the EMA with decay
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` averaged updates; non-floating tensors take the current value.

    Raises:
        ValueError: when ``decay`` is not in (0, 1).
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay {decay!r} must lie in (0, 1), e.g. 0.999; null turns the average off")

    def ema(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current
        n = num_averaged.to(averaged.dtype)
        d = torch.clamp((1.0 + n) / (10.0 + n), max=decay)
        return averaged + (current - averaged) * (1.0 - d)

    return ema


class WarmupEMA(WeightAveraging):
    """Lightning callback keeping the warm-up EMA of :func:`warmup_ema_avg_fn` (see the module docstring).

    Args:
        decay: the EMA's decay once warmed up, per optimiser step (0.999: a memory of about 1000 steps).
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__(avg_fn=warmup_ema_avg_fn(decay))
        self.decay = float(decay)


def ema_callback(decay: float | None) -> WarmupEMA | None:
    """The bundle's EMA callback for ``ema_decay``: None (no averaging) when ``decay`` is None or 0."""
    return WarmupEMA(float(decay)) if decay else None
