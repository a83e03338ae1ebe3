"""How a network receives the constraint vector: through its own second argument (FiLM), or as
constant channels appended to its input (any plain MONAI network)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

__all__ = ["forward_conditioned", "takes_constraints"]


def takes_constraints(network: nn.Module) -> bool:
    """True when ``network.forward`` takes ``(x, constraints)``, like ConditionedUNet."""
    return len(inspect.signature(network.forward).parameters) >= 2


def forward_conditioned(network: nn.Module, x: torch.Tensor, c: torch.Tensor, film: bool) -> torch.Tensor:
    """``network(x, c)`` when ``film``, else ``network`` on ``x`` with the (B, K) constraints ``c``
    appended as K constant channels (its ``in_channels`` must count them)."""
    if film:
        return network(x, c)
    channels = c.view(*c.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
    return network(torch.cat([x, channels], dim=1))
