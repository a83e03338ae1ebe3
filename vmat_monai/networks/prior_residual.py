"""Residual dose prediction: the network learns a correction to the beam dose prior in its input.

``dose / Rx = prior + gate * network(input)``, where ``prior`` is the sum of the last
``prior_channels`` input channels (the beam dose prior of
:class:`~vmat_monai.transforms.BeamDosePriord`, already relative to the primary prescription; its
sector channels sum to the whole-arc prior) and ``gate`` is a learnable scalar that starts at 0
(ReZero), so training starts from the prior itself and the network only has to learn where the
plan departs from a uniform arc. The wrapped network must have a linear output (for
:class:`~vmat_monai.networks.ConditionedUNet`, ``out_activation=None``). In eval mode the output is
clipped at 0 (dose is never negative); in training it is not, so the loss sees the raw values.
"""

from __future__ import annotations

import torch
from torch import nn

from vmat_monai.networks.conditioning import forward_conditioned, takes_constraints

__all__ = ["PriorResidual"]


class PriorResidual(nn.Module):
    """Wrap a network so that it predicts a correction to the dose prior held in its input.

    Args:
        network: a network taking ``(x, constraints)`` (FiLM) or ``x`` alone; for the latter the
            constraints are appended as constant channels (its ``in_channels`` must count them).
        prior_channels: how many trailing input channels hold the prior (bundle ``prior_channels``: 1 or 3).
    """

    def __init__(self, network: nn.Module, prior_channels: int = 1) -> None:
        super().__init__()
        if int(prior_channels) < 1:
            raise ValueError(
                f"PriorResidual needs the beam dose prior in the input (prior_channels >= 1, got {prior_channels}): "
                "set `prior_channels` to 1 or 3, or use the network without the residual wrapper"
            )
        if getattr(network, "out_activation", None) is not None:
            raise ValueError(
                f"PriorResidual needs a network with a linear output (its correction can be negative), got "
                f"out_activation={network.out_activation!r}: set `out_activation` to null (bundle: stack "
                "configs/residual.json after the network's config)"
            )
        self.network = network
        self.prior_channels = int(prior_channels)
        self.gate = nn.Parameter(torch.zeros(()))
        self._film = takes_constraints(network)

    def forward(self, x: torch.Tensor, constraints: torch.Tensor) -> torch.Tensor:
        """Args:
        x: (B, in_channels, *spatial), the prior in the last ``prior_channels`` channels.
        constraints: (B, K).
        """
        if x.shape[1] <= self.prior_channels:
            raise ValueError(f"input has {x.shape[1]} channels, the prior alone takes {self.prior_channels}")
        prior = x[:, -self.prior_channels :].sum(dim=1, keepdim=True)
        c = torch.as_tensor(constraints, dtype=x.dtype, device=x.device).view(x.shape[0], -1)
        out = prior + self.gate * forward_conditioned(self.network, x, c, self._film)
        return out if self.training else out.clamp_min(0.0)
