"""Conditional dose diffusion at inference: full-volume DDIM sampling with MONAI's scheduler and
sliding-window inferer.

The diffused quantity (the relative dose, or its residual to the beam dose prior) and the
denoiser call are in :mod:`vmat_monai.engine.denoiser`.

Every DDIM step runs the denoiser over the whole volume with one sliding window over the noisy
dose and its conditions together (the noise is drawn once for the whole volume), so a sample is
one consistent volume without seams at window borders. ``MONAI``'s ``DiffusionInferer.sample``
calls the network on the whole image at once, which a 3D volume on a CPU or one GPU cannot hold
at training resolution; this loop is that method with the network call replaced by the
sliding window. A sample is reproducible: sample ``s`` of a case uses a generator seeded with
``seed + s`` for its starting noise and (with ``eta > 0``) the noise of every step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from monai.networks.schedulers import DDIMScheduler, Scheduler
from torch import nn

from vmat_monai.engine.denoiser import DoseScale, denoise, diffusion_target, is_denoiser

__all__ = ["DiffusionSampler", "DoseScale", "denoise", "is_denoiser"]


class DiffusionSampler:
    """Full-volume DDIM sampling of the relative dose.

    Args:
        scheduler: the sampling scheduler (MONAI ``DDIMScheduler``) with the training schedule's
            ``num_train_timesteps``, ``schedule`` and ``prediction_type``.
        steps: DDIM steps per sample (1 .. ``num_train_timesteps``).
        eta: DDIM stochasticity (0: deterministic given the starting noise; 1: DDPM-like).
        samples: samples per case (their mean is the prediction, their sd the uncertainty).
        seed: seed of sample 0 (sample s uses ``seed + s``).
        dose_range: relative dose mapped to +1 (:class:`~vmat_monai.engine.denoiser.DoseScale`), as in
            training; a :class:`~vmat_monai.engine.denoiser.PriorResidualDenoiser` brings its own.
    """

    def __init__(
        self,
        scheduler: Scheduler | None = None,
        steps: int = 50,
        eta: float = 0.0,
        samples: int = 1,
        seed: int = 0,
        dose_range: float = 1.25,
    ) -> None:
        default = DDIMScheduler(schedule="cosine", prediction_type="sample")
        self.scheduler = scheduler if scheduler is not None else default
        self.steps = self.checked_steps(steps)
        self.samples = self.checked_samples(samples)
        if eta < 0:
            raise ValueError(f"eta must be >= 0 (0: deterministic DDIM), got {eta}")
        self.eta = float(eta)
        self.seed = int(seed)
        self.scale = DoseScale(dose_range)

    @property
    def num_train_timesteps(self) -> int:
        """Length of the training schedule the sampler steps through."""
        return int(self.scheduler.num_train_timesteps)

    def checked_steps(self, steps: int) -> int:
        """``steps`` when it is a usable DDIM step count, else a ValueError naming the limit."""
        if not 1 <= int(steps) <= self.num_train_timesteps:
            raise ValueError(
                f"DDIM steps must be between 1 and the training schedule's {self.num_train_timesteps} timesteps, "
                f"got {steps}: pass --ddim-steps (bundle: ddim_steps) of at most {self.num_train_timesteps}"
            )
        return int(steps)

    @staticmethod
    def checked_samples(samples: int) -> int:
        """``samples`` when >= 1, else a ValueError."""
        if int(samples) < 1:
            raise ValueError(f"the number of samples must be at least 1, got {samples}: pass --samples 1 or more")
        return int(samples)

    @torch.no_grad()
    def sample(
        self,
        network: nn.Module,
        condition: torch.Tensor,
        constraints: torch.Tensor,
        inferer: Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor],
        samples: int | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Relative-dose samples (S, 1, *spatial) for one case.

        Args:
            network: the denoiser (see :func:`denoise`).
            condition: (1, C, *spatial) conditioning channels (CT, distances, prior) of the case.
            constraints: (1, K) constraint vector.
            inferer: a MONAI inferer (``SlidingWindowInferer``) called as ``inferer(inputs, fn)``.
            samples, steps: override the sampler's defaults.
        """
        n = self.checked_samples(samples if samples is not None else self.samples)
        k = self.checked_steps(steps if steps is not None else self.steps)
        if condition.shape[0] != 1:
            raise ValueError(f"sample one case at a time, got a batch of {condition.shape[0]}")
        shape = (1, 1, *condition.shape[2:])
        target = diffusion_target(network, self.scale)
        out = []
        for s in range(n):
            generator = torch.Generator(device=condition.device).manual_seed(self.seed + s)
            scheduler = copy.deepcopy(self.scheduler)
            scheduler.set_timesteps(k, device=condition.device)
            x = torch.randn(shape, generator=generator, device=condition.device, dtype=condition.dtype)
            for t in scheduler.timesteps:
                step_t = torch.full((1,), int(t), device=condition.device, dtype=torch.long)

                def fn(patch: torch.Tensor, step_t: torch.Tensor = step_t) -> torch.Tensor:
                    return denoise(network, patch, constraints.expand(patch.shape[0], -1), step_t)

                model_out = inferer(torch.cat([x, condition], dim=1), fn)
                x, _ = scheduler.step(model_out.to(x.dtype), int(t), x, eta=self.eta, generator=generator)
            out.append(target.from_unit(x.clamp(-1.0, 1.0), condition))
        return torch.cat(out, dim=0)
