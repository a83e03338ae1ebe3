"""The Lightning module of the conditional dose diffusion model (bundle ``vmat_dose_diffusion``).

Training (MONAI's generative components): the relative dose of a patch is scaled to [-1, 1]
(:class:`~vmat_monai.engine.denoiser.DoseScale`; or its residual to the beam dose prior with a
:class:`~vmat_monai.engine.denoiser.PriorResidualDenoiser`), noised at a random timestep by a
``DDPMScheduler`` and denoised by the network given the noisy dose concatenated with the patch's
conditioning channels (``DiffusionInferer``, mode ``concat``) and the constraint vector; the loss
is the mean squared error against the scheduler's prediction target (``epsilon``: the noise,
``v_prediction``: the velocity, ``sample``: the clean dose), plus, when the module is given the
U-Net's dose loss (bundle ``configs/dose_losses.json``), that loss weighted by ``loss_weight`` on
the denoiser's estimate of the clean relative dose at every training timestep (the PTV
under-dose, DVH and gradient terms act on what sampling ends on). Validation and prediction sample the
full volume with DDIM and a sliding window (:class:`~vmat_monai.engine.diffusion_sampling.DiffusionSampler`).
Optimiser, learning-rate schedule, constraint statistics and validation metrics are the U-Net's
(:class:`~vmat_monai.engine.module.DosePredictionModule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDPMScheduler, Scheduler
from torch import nn

from vmat_monai.engine.denoiser import denoise, diffusion_target, is_denoiser
from vmat_monai.engine.diffusion_sampling import DiffusionSampler
from vmat_monai.engine.module import DosePredictionModule, _float32, _plain, dose_metrics

__all__ = ["DiffusionDoseModule"]

_TARGETS = ("epsilon", "v_prediction", "sample")


def _training_twin(sampling: Scheduler) -> DDPMScheduler:
    """A DDPM scheduler with the noise schedule and prediction type of ``sampling`` (when only the
    sampler is given, e.g. for prediction)."""
    twin = DDPMScheduler(int(sampling.num_train_timesteps), prediction_type=str(sampling.prediction_type))
    for name in ("betas", "alphas", "alphas_cumprod"):
        setattr(twin, name, getattr(sampling, name).clone())
    return twin


class DiffusionDoseModule(DosePredictionModule):
    """Train a conditional denoiser of the relative dose; predict by DDIM sampling.

    Args:
        network: the denoiser (ConditionedUNet with ``n_time > 0``, or a MONAI ``DiffusionModelUNet``
            whose ``in_channels`` count the noisy dose, the conditioning channels and the constraints).
        scheduler: the training noise scheduler (MONAI ``DDPMScheduler``); None: one with the
            sampler's schedule and prediction type.
        sampler: the DDIM sampler for validation and prediction; its scheduler must have the
            training schedule's length and prediction type.
        val_steps: DDIM steps of the one sample drawn per validation case (fewer than for
            prediction, to keep validation cheap).
        loss: the U-Net's dose loss (``(pred, target, masks=, body=, rx_gy=)`` on dose / Rx, see
            vmat_monai.losses), applied to the clean-dose estimate; None: the denoising loss alone.
        loss_weight: weight of ``loss`` against the denoising mean squared error (unit range).
        Other arguments: as :class:`~vmat_monai.engine.module.DosePredictionModule`.
    """

    def __init__(
        self,
        network: nn.Module,
        scheduler: Scheduler | None = None,
        sampler: DiffusionSampler | None = None,
        primary_channel: int = 0,
        learning_rate: float = 2e-4,
        weight_decay: float = 1e-5,
        max_epochs: int = 100,
        roi_size: Sequence[int] = (128, 128, 128),
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        schedule_seconds: float | None = None,
        val_steps: int = 10,
        loss: nn.Module | None = None,
        loss_weight: float = 1.0,
        channels_last: bool = False,
    ) -> None:
        if not is_denoiser(network):
            raise ValueError(
                f"{type(network).__name__} is not a diffusion denoiser: use a ConditionedUNet with n_time > 0 or "
                "a MONAI DiffusionModelUNet (the regression U-Net belongs to the vmat_dose_unet bundle)"
            )
        if not loss_weight >= 0:
            raise ValueError(f"loss_weight must be >= 0, got {loss_weight}")
        super().__init__(
            network,
            loss,
            primary_channel,
            learning_rate,
            weight_decay,
            max_epochs,
            roi_size,
            sw_batch_size,
            overlap,
            schedule_seconds,
            channels_last,
        )
        self.sampler = sampler if sampler is not None else DiffusionSampler()
        self.scheduler = scheduler if scheduler is not None else _training_twin(self.sampler.scheduler)
        target = str(self.scheduler.prediction_type)
        if target not in _TARGETS:
            raise ValueError(f"prediction_type must be one of {_TARGETS}, got {target!r}")
        sampling = self.sampler.scheduler
        trained = (self.scheduler.num_train_timesteps, target)
        if (sampling.num_train_timesteps, str(sampling.prediction_type)) != trained:
            raise ValueError(
                "the sampling scheduler must match the training one: "
                f"{sampling.num_train_timesteps} timesteps / {sampling.prediction_type} against "
                f"{self.scheduler.num_train_timesteps} / {target}"
            )
        self.sampler.checked_steps(val_steps)
        self.inferer_train = DiffusionInferer(self.scheduler)

    def _denoiser(self, constraints: torch.Tensor):
        def call(x: torch.Tensor, timesteps: torch.Tensor, context: Any = None) -> torch.Tensor:
            return denoise(self.network, self._layout(x), constraints, timesteps)

        return call

    def clean_estimate(self, prediction: torch.Tensor, noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """The denoiser's estimate of the clean value (unit range) from its ``prediction`` for the
        ``noisy`` input at ``steps``, as the scheduler's step computes it (clipped like its samples
        when ``clip_sample`` is set)."""
        kind = str(self.scheduler.prediction_type)
        if kind == "sample":
            x0 = prediction
        else:
            ab = self.scheduler.alphas_cumprod.to(noisy.device)[steps.long()].to(noisy.dtype)
            ab = ab.view(-1, *([1] * (noisy.ndim - 1)))
            if kind == "epsilon":
                x0 = (noisy - (1 - ab).sqrt() * prediction) / ab.sqrt()
            else:  # v_prediction
                x0 = ab.sqrt() * noisy - (1 - ab).sqrt() * prediction
        if getattr(self.scheduler, "clip_sample", False):
            low, high = self.scheduler.clip_sample_values
            x0 = x0.clamp(low, high)
        return x0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        cond = _plain(batch["input"])
        rel = _plain(batch["dose"]).to(cond.dtype)
        c = torch.as_tensor(batch["constraints"], device=cond.device).to(cond.dtype).view(cond.shape[0], -1)
        diffused = diffusion_target(self.network, self.sampler.scale)
        clean = diffused.to_unit(rel, cond)
        noise = torch.randn_like(clean)
        steps = torch.randint(0, self.scheduler.num_train_timesteps, (clean.shape[0],), device=clean.device)
        pred = self.inferer_train(clean, self._denoiser(c), noise, steps, condition=cond, mode="concat")
        target = {
            "epsilon": lambda: noise,
            "sample": lambda: clean,
            "v_prediction": lambda: self.scheduler.get_velocity(clean, noise, steps),
        }[str(self.scheduler.prediction_type)]()
        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
        bs = clean.shape[0]
        if self.loss is not None:
            noisy = self.scheduler.add_noise(clean, noise, steps)  # the input the inferer gave the denoiser
            estimate = diffused.from_unit(self.clean_estimate(pred.float(), noisy.float(), steps), cond.float())
            dose_loss = self._loss(estimate, batch)
            self.log("train_denoise_mse", loss, batch_size=bs)
            self.log("train_dose_loss", dose_loss, batch_size=bs)
            self._log_loss_terms(bs)
            loss = loss + self.hparams.loss_weight * dose_loss
        self.log("train_loss", loss, prog_bar=True, batch_size=bs)
        return loss

    def predict_volume(
        self, x: torch.Tensor, constraints: torch.Tensor, samples: int | None = None, steps: int | None = None
    ) -> torch.Tensor:
        """Relative-dose samples (S, 1, *spatial) of one case's full volume (DDIM, sliding window)."""
        if x.shape[0] != 1:
            raise ValueError(f"sample one case at a time, got a batch of {x.shape[0]}")
        x = _plain(x)
        c = torch.as_tensor(constraints, device=x.device).to(x.dtype).view(1, -1)
        return self.sampler.sample(self.network, x, c, self.inferer, samples=samples, steps=steps)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, float]:
        batch = {k: _float32(v) for k, v in batch.items()}
        pred = self.predict_volume(batch["input"], batch["constraints"], samples=1, steps=self.hparams.val_steps)
        rx = float(torch.as_tensor(batch["prescription_gy"]).reshape(-1)[0])
        metrics = dose_metrics(
            pred[0, 0] * rx,
            _plain(batch["dose"])[0, 0] * rx,
            batch["body"][0, 0],
            batch["masks"][0, self.hparams.primary_channel],
        )
        for k, v in metrics.items():
            self.log(f"val_{k}", v, prog_bar=k == "mae_body_gy", batch_size=1, sync_dist=True)
        if "d95_error_gy" in metrics:
            self.log("val_abs_d95_error_gy", abs(metrics["d95_error_gy"]), batch_size=1, sync_dist=True)
        return metrics
