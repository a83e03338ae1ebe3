"""What the dose diffusion model diffuses, and one call of its denoiser.

Two targets, both in the relative dose (dose / primary prescription) mapped to the diffusion
model's [-1, 1] range with the same Gy per unit (``dose_range / 2`` relative dose per unit), so a
noise level means the same dose in both:

- the dose itself (:class:`DoseScale`, the default): ``u = 2 · rel / dose_range − 1``
  (``dose_range`` = 1.25: 125 % of the prescription maps to +1);
- its residual to the beam dose prior in the conditioning channels (:class:`PriorResidualDenoiser`,
  bundle ``configs/residual.json``): ``u = 2 · (rel − prior) / dose_range``; ``prior`` is the sum of
  the last ``prior_channels`` conditioning channels, so ±0.625 of the prescription around the
  prior is representable. Sampling starts from noise around the prior instead of around 62.5 %
  of the prescription: the denoiser learns where the plan departs from the beams' dose, as the
  U-Net's :class:`~vmat_monai.networks.PriorResidual` does.

The scheduler's ``clip_sample`` keeps predicted clean values within [-1, 1]; relative doses
leaving the denoised range are clamped at 0 (dose is never negative).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

__all__ = ["DiffusionTarget", "DoseScale", "PriorResidualDenoiser", "denoise", "diffusion_target", "is_denoiser"]


class DiffusionTarget(Protocol):
    """Maps the relative dose to the diffused quantity in [-1, 1] and back, given the conditioning
    channels (C, or B × C, spatial dims) of the same voxels; ``name`` is recorded with predictions."""

    name: str

    def to_unit(self, rel: torch.Tensor, condition: torch.Tensor) -> torch.Tensor: ...

    def from_unit(self, u: torch.Tensor, condition: torch.Tensor) -> torch.Tensor: ...


class DoseScale:
    """Relative dose (dose / Rx) <-> the diffusion model's [-1, 1] range (the dose itself is diffused)."""

    name = "dose"

    def __init__(self, dose_range: float = 1.25) -> None:
        if not dose_range > 0:
            raise ValueError(f"dose_range must be > 0 (relative dose mapped to +1), got {dose_range}")
        self.dose_range = float(dose_range)

    def to_unit(self, rel: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Relative dose -> [-1, 1] (values above ``dose_range`` map above 1); ``condition`` unused."""
        return rel * (2.0 / self.dose_range) - 1.0

    def from_unit(self, u: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """[-1, 1] -> relative dose, never negative; ``condition`` unused."""
        return ((u + 1.0) * (self.dose_range / 2.0)).clamp_min(0.0)


def is_denoiser(network: nn.Module) -> bool:
    """True for a diffusion denoiser: a ConditionedUNet with a timestep embedding (``n_time > 0``),
    a MONAI ``DiffusionModelUNet``, or either inside a :class:`PriorResidualDenoiser`."""
    from monai.networks.nets import DiffusionModelUNet

    if isinstance(network, PriorResidualDenoiser):
        return True
    return bool(getattr(network, "n_time", 0)) or isinstance(network, DiffusionModelUNet)


def denoise(network: nn.Module, x: torch.Tensor, constraints: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """One denoiser call on ``x`` = (noisy dose, conditioning channels), (B, 1 + C, *spatial), with
    the (B, K) constraints at the (B,) timesteps. A ConditionedUNet denoiser gets the constraints
    and the timestep through FiLM; a ``DiffusionModelUNet`` gets the constraints as K constant
    channels appended to ``x`` (its ``in_channels`` = 1 + C + K) and the timesteps as its own."""
    if isinstance(network, PriorResidualDenoiser):
        network = network.network
    t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
    c = constraints.to(x.dtype).reshape(x.shape[0], -1)
    if getattr(network, "n_time", 0):
        return network(x, c, t)
    channels = c.view(*c.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
    return network(torch.cat([x, channels], dim=1), timesteps=t)


class PriorResidualDenoiser(nn.Module):
    """A denoiser whose diffused quantity is the relative dose minus the beam dose prior.

    The wrapped denoiser is called unchanged (:func:`denoise`); this module only says what its
    samples mean. Its state dict holds the denoiser's under ``network.`` plus ``prior_residual``
    (the prior's channel count), so a checkpoint of it does not load into a plain denoiser, nor the
    reverse, and the loading error names the config to stack.

    Args:
        network: a ConditionedUNet with ``n_time > 0`` or a MONAI ``DiffusionModelUNet``.
        prior_channels: how many trailing conditioning channels hold the prior (bundle ``prior_channels``).
        dose_range: relative dose per two units of the diffused range (as :class:`DoseScale`'s).
    """

    name = "prior_residual"

    def __init__(self, network: nn.Module, prior_channels: int = 1, dose_range: float = 1.25) -> None:
        super().__init__()
        if int(prior_channels) < 1:
            raise ValueError(
                f"diffusing the residual to the beam dose prior needs the prior in the input (prior_channels >= 1, "
                f"got {prior_channels}): set `prior_channels` to 1 or 3, or drop configs/residual.json"
            )
        if not is_denoiser(network) or isinstance(network, PriorResidualDenoiser):
            raise ValueError(
                f"PriorResidualDenoiser wraps a diffusion denoiser (ConditionedUNet with n_time > 0 or MONAI "
                f"DiffusionModelUNet), got {type(network).__name__}"
            )
        self.network = network
        self.prior_channels = int(prior_channels)
        self.scale = DoseScale(dose_range)
        self.register_buffer("prior_residual", torch.tensor(self.prior_channels))

    def prior(self, condition: torch.Tensor) -> torch.Tensor:
        """The prior (B, 1, *spatial) as the sum of the last ``prior_channels`` channels of ``condition``."""
        if condition.shape[1] < self.prior_channels:
            raise ValueError(f"conditioning has {condition.shape[1]} channels, the prior takes {self.prior_channels}")
        return condition[:, -self.prior_channels :].sum(dim=1, keepdim=True)

    def to_unit(self, rel: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Relative dose -> its residual to the prior in units of ``dose_range / 2``."""
        return (rel - self.prior(condition).to(rel.dtype)) * (2.0 / self.scale.dose_range)

    def from_unit(self, u: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Diffused residual -> relative dose (prior + residual), never negative."""
        return (self.prior(condition).to(u.dtype) + u * (self.scale.dose_range / 2.0)).clamp_min(0.0)

    def forward(self, x: torch.Tensor, constraints: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The wrapped denoiser's output for (noisy residual, conditioning channels) ``x``."""
        return denoise(self.network, x, constraints, timesteps)


def diffusion_target(network: nn.Module, scale: DoseScale) -> DiffusionTarget:
    """What ``network`` diffuses: the prior residual for a :class:`PriorResidualDenoiser`, else the
    dose scaled by ``scale``."""
    return network if isinstance(network, PriorResidualDenoiser) else scale
