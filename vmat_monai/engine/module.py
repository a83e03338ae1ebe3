"""The Lightning module: training on patches, full-volume validation with a sliding window."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from pytorch_lightning.callbacks import Timer
from torch import nn

from vmat_monai.engine.numeric_formats import guard_small_bf16_conv3d, to_channels_last
from vmat_monai.networks.conditioning import forward_conditioned, takes_constraints

__all__ = ["DosePredictionModule", "dose_metrics", "time_cosine"]


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_tensor() if isinstance(t, MetaTensor) else t


def dose_metrics(
    pred_gy: torch.Tensor, true_gy: torch.Tensor, body: torch.Tensor, primary: torch.Tensor
) -> dict[str, float]:
    """MAE in the body and in the primary target, and the primary target's D95 error (Gy), one case."""
    out = {"mae_body_gy": float((pred_gy - true_gy).abs()[body > 0].mean())}
    inside = primary > 0
    if inside.any():
        p, t = pred_gy[inside].float(), true_gy[inside].float()
        out["mae_ptv_gy"] = float((p - t).abs().mean())
        out["d95_error_gy"] = float(torch.quantile(p, 0.05) - torch.quantile(t, 0.05))
    return out


def _float32(v: Any) -> Any:
    """Integer and half-precision tensors as float32; anything else unchanged."""
    if torch.is_tensor(v) and (not v.is_floating_point() or v.dtype in (torch.float16, torch.bfloat16)):
        return v.float()
    return v


class DosePredictionModule(pl.LightningModule):
    """Predict dose / Rx from ``input`` (CT + signed distances) and ``constraints``.

    A network whose ``forward`` takes two arguments (like :class:`~vmat_monai.networks.ConditionedUNet`)
    receives the constraints through FiLM; any other MONAI network (``UNet``, ``DynUNet``,
    ``SegResNet``, ``SwinUNETR``) receives them as constant channels appended to its input, so
    its ``in_channels`` must be ``1 + C + K``.

    Args:
        network: the network.
        loss: a loss taking ``(pred, target, masks=, body=, rx_gy=)`` (see vmat_monai.losses);
            only needed for training and validation.
        primary_channel: mask channel of the primary target (validation metrics).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_epochs: length of the cosine schedule, epochs.
        schedule_seconds: if set, the cosine schedule runs over this much training wall-clock
            time instead of over epochs (for time-bounded runs with the Trainer's ``max_time``;
            resumed runs continue where the Trainer's timer stopped), with a 2 % linear warm-up.
        roi_size: sliding-window size for validation, voxels.
        sw_batch_size: windows per forward pass.
        overlap: sliding-window overlap (Gaussian blending).
        channels_last: run the network in ``channels_last_3d`` (weights and inputs; faster on CPUs,
            see :mod:`vmat_monai.engine.numeric_formats`); the results are the same.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module | None = None,
        primary_channel: int = 0,
        learning_rate: float = 2e-4,
        weight_decay: float = 1e-5,
        max_epochs: int = 100,
        roi_size: Sequence[int] = (128, 128, 128),
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        schedule_seconds: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "loss", "scheduler", "sampler"])  # objects: not in checkpoints
        guard_small_bf16_conv3d(network)  # a wrong CPU bf16 kernel: see vmat_monai.engine.numeric_formats
        self.network = to_channels_last(network) if channels_last else network
        self.channels_last = bool(channels_last)
        self.loss = loss
        self._fit_start: float | None = None
        self.film = takes_constraints(network)
        self.inferer = SlidingWindowInferer(
            roi_size=tuple(roi_size), sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian"
        )

    def forward(self, x: torch.Tensor, constraints: torch.Tensor) -> torch.Tensor:
        x = self._layout(x.as_tensor() if isinstance(x, MetaTensor) else x)  # plain tensors inside the network
        c = constraints.to(x.dtype).view(x.shape[0], -1)
        return forward_conditioned(self.network, x, c, self.film)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the network's memory layout (``channels_last_3d`` when enabled, for 5-D tensors)."""
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last and x.dim() == 5 else x

    def predict_volume(self, x: torch.Tensor, constraints: torch.Tensor) -> torch.Tensor:
        """Full-volume prediction (dose / Rx) with the Gaussian-blended sliding window."""
        c = constraints.view(x.shape[0], -1)
        if x.shape[0] != 1:
            return torch.cat([self.predict_volume(x[i : i + 1], c[i : i + 1]) for i in range(x.shape[0])])
        return self.inferer(x, lambda patch: self(patch, c.expand(patch.shape[0], -1)))

    def _loss(self, pred: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of ``pred`` (dose / Rx) in float32, also under bf16/fp16 autocast: the DVH and
        PTV terms compare doses in Gy, which bf16 resolves only to 0.25–0.5 Gy near 70 Gy."""
        if self.loss is None:
            raise RuntimeError("DosePredictionModule was built without a loss: training needs one")
        pred = _plain(pred).float()
        rx = torch.as_tensor(batch["prescription_gy"], device=pred.device, dtype=pred.dtype).view(-1)
        plain = {k: _float32(_plain(batch[k])) for k in ("dose", "masks", "body")}
        with torch.autocast(pred.device.type, enabled=False):
            return self.loss(pred, plain["dose"], masks=plain["masks"], body=plain["body"], rx_gy=rx)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        pred = self(batch["input"], batch["constraints"])
        loss = self._loss(pred, batch)
        bs = pred.shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=bs)
        self._log_loss_terms(bs)
        return loss

    def _log_loss_terms(self, batch_size: int) -> None:
        """Log each term of a :class:`~vmat_monai.losses.CombinedDoseLoss` of the last call as ``train_<term>``."""
        for name, value in getattr(self.loss, "last_terms", {}).items():
            self.log(f"train_{name}", value, batch_size=batch_size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, float]:
        batch = {k: _float32(v) for k, v in batch.items()}  # the cache holds compact types (val_transforms)
        pred = self.predict_volume(batch["input"], batch["constraints"]).float()
        rx = torch.as_tensor(batch["prescription_gy"], device=pred.device, dtype=pred.dtype).view(-1, 1, 1, 1, 1)
        metrics = dose_metrics(
            (pred * rx)[0, 0],
            (batch["dose"] * rx)[0, 0],
            batch["body"][0, 0],
            batch["masks"][0, self.hparams.primary_channel],
        )
        self.log("val_loss", self._loss(pred, batch), batch_size=1, sync_dist=True)
        for k, v in metrics.items():
            self.log(f"val_{k}", v, prog_bar=k == "mae_body_gy", batch_size=1, sync_dist=True)
        if "d95_error_gy" in metrics:
            self.log("val_abs_d95_error_gy", abs(metrics["d95_error_gy"]), batch_size=1, sync_dist=True)
        return metrics

    def on_fit_start(self) -> None:
        """Give FiLM networks the training set's constraint statistics, once: a resumed or
        fine-tuned run keeps the statistics its weights were trained with."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "training_constraints"):
            return
        todo = [
            m
            for m in self.network.modules()
            if hasattr(m, "set_condition_statistics") and not bool(getattr(m, "condition_fitted", True))
        ]
        if todo:
            vectors = datamodule.training_constraints()
            for m in todo:
                m.set_condition_statistics(vectors)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.get("schedule_seconds"):
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda _: time_cosine(self._train_seconds(), self.hparams.schedule_seconds)
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(self.hparams.max_epochs)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def _train_seconds(self) -> float:
        """Training time so far, s: the Trainer's timer (kept across resumes) or time since fit start."""
        trainer = self._trainer
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None) if trainer is not None else None
        if timer is not None:
            return float(timer.time_elapsed("train"))
        if self._fit_start is None:
            self._fit_start = time.monotonic()
        return time.monotonic() - self._fit_start


def time_cosine(elapsed_s: float, total_s: float, warmup: float = 0.02, floor: float = 0.01) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` of the budget, then cosine down to ``floor``."""
    p = min(max(elapsed_s / total_s, 0.0), 1.0)
    if p < warmup:
        return max(p / warmup, floor)
    q = (p - warmup) / (1.0 - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * q))
