"""Dose losses: small modules on (B, 1, ...) dose / Rx, combinable with weights from config.

Every loss takes ``pred`` and ``target`` (dose / Rx) and, where it needs them, ``masks``
(B, C, ...) binary structures, ``body`` (B, 1, ...) and ``rx_gy`` (B,) prescriptions in Gy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AsymmetricPTVLoss",
    "CombinedDoseLoss",
    "DVHLoss",
    "DoseMAELoss",
    "GradientLoss",
    "StructureWeightedLoss",
]


def _masked_mean(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    if w is None:
        return x.mean()
    w = w.to(x.dtype).expand_as(x)
    return (x * w).sum() / w.sum().clamp_min(1e-6)


class DoseMAELoss(nn.Module):
    """Mean absolute (or squared) error of dose / Rx, optionally inside the body only.

    Args:
        squared: MSE instead of MAE.
        body_only: average over body voxels when ``body`` is given.
    """

    def __init__(self, squared: bool = False, body_only: bool = True) -> None:
        super().__init__()
        self.squared, self.body_only = squared, body_only

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, body: torch.Tensor | None = None, **_: object
    ) -> torch.Tensor:
        err = (pred - target) ** 2 if self.squared else (pred - target).abs()
        return _masked_mean(err, body if self.body_only else None)


class GradientLoss(nn.Module):
    """L1 between forward finite differences of prediction and target along every spatial axis."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **_: object) -> torch.Tensor:
        terms = [
            (torch.diff(pred, dim=dim) - torch.diff(target, dim=dim)).abs().mean()
            for dim in range(2, pred.ndim)
            if pred.shape[dim] > 1
        ]
        if not terms:
            raise ValueError(f"no spatial axis longer than 1 voxel in {tuple(pred.shape)}")
        return torch.stack(terms).mean()


class StructureWeightedLoss(nn.Module):
    """Voxel-weighted L1: targets, a band around organ surfaces, and the rest.

    Args:
        target_channels: mask channels of the targets.
        organ_channels: mask channels of the organs at risk.
        w_target: weight inside targets.
        w_band: weight in the band of ``band_voxels`` around organ surfaces.
        w_background: weight elsewhere.
        band_voxels: half-width of the organ boundary band, voxels.
    """

    def __init__(
        self,
        target_channels: Sequence[int],
        organ_channels: Sequence[int],
        w_target: float = 3.0,
        w_band: float = 2.0,
        w_background: float = 1.0,
        band_voxels: int = 2,
    ) -> None:
        super().__init__()
        self.t, self.o = list(target_channels), list(organ_channels)
        self.w = (w_target, w_band, w_background)
        self.k = int(band_voxels)

    def weights(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, ...) voxel weights; the largest applicable weight wins."""
        pool = F.max_pool3d if masks.ndim == 5 else F.max_pool2d
        k = 2 * self.k + 1
        organs = masks[:, self.o].float()
        dil = pool(organs, k, stride=1, padding=self.k)
        ero = -pool(-organs, k, stride=1, padding=self.k)
        band = ((dil - ero) > 0).any(1, keepdim=True)
        tgt = (masks[:, self.t] > 0).any(1, keepdim=True)
        w = torch.full_like(tgt, self.w[2], dtype=masks.dtype if masks.is_floating_point() else torch.float32)
        w = torch.where(band, torch.maximum(w, torch.tensor(self.w[1], dtype=w.dtype, device=w.device)), w)
        return torch.where(tgt, torch.maximum(w, torch.tensor(self.w[0], dtype=w.dtype, device=w.device)), w)

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor | None = None, **_: object
    ) -> torch.Tensor:
        if masks is None:
            raise ValueError("StructureWeightedLoss needs masks")
        w = self.weights(masks).to(pred.dtype)
        return ((pred - target).abs() * w).sum() / w.expand_as(pred).sum()


class AsymmetricPTVLoss(nn.Module):
    """Inside the targets, under-dosage costs ``under_weight`` times more than over-dosage (L1).

    Args:
        target_channels: mask channels of the targets.
        under_weight: cost of under-dosage relative to over-dosage.
        average_over: ``"targets"`` divides by the target voxels (each target voxel then weighs
            about 1 / target fraction more than a voxel of a body-averaged MAE); ``"body"`` divides
            by the body voxels, so with weight ``w`` next to a body MAE of weight 1 a target voxel's
            under-dosage costs ``1 + w·under_weight`` and its over-dosage ``1 + w``: the prediction
            moves to a higher quantile inside the targets without the targets outweighing the rest.
    """

    AVERAGES = ("targets", "body")

    def __init__(
        self, target_channels: Sequence[int], under_weight: float = 3.0, average_over: str = "targets"
    ) -> None:
        super().__init__()
        if average_over not in self.AVERAGES:
            raise ValueError(f"average_over={average_over!r}: use one of {', '.join(self.AVERAGES)}")
        self.t, self.k, self.average_over = list(target_channels), float(under_weight), average_over

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        masks: torch.Tensor | None = None,
        body: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor:
        if masks is None:
            raise ValueError("AsymmetricPTVLoss needs masks")
        inside = (masks[:, self.t] > 0).any(1, keepdim=True)
        diff = pred - target
        err = torch.where(diff < 0, -self.k * diff, diff)
        if self.average_over == "targets":
            return _masked_mean(err, inside)
        if body is None:
            raise ValueError("AsymmetricPTVLoss(average_over='body') needs body")
        in_body = (body > 0).expand_as(err)
        return (err * inside.to(err.dtype)).sum() / in_body.sum().clamp_min(1).to(err.dtype)


class DVHLoss(nn.Module):
    """Differentiable DVH loss with thresholds and temperature in Gy.

    The soft volume V(d) = mean over a structure of sigmoid((dose - d) / temperature_gy). Targets
    are penalised where the prediction covers less than the plan at each threshold (under-dosage,
    which is what lowers D95); organs where the prediction irradiates more than the plan. Each
    target's thresholds are fractions of its own prescription: the case's Rx (``rx_gy``, the
    primary target's) times the target's level relative to the highest of ``target_levels``.

    Args:
        target_channels: mask channels of the targets.
        organ_channels: mask channels of the organs.
        target_levels: the targets' prescribed doses in ``target_channels`` order (any unit, only
            the ratios to the highest matter; e.g. 70, 63, 56 Gy: PTV56's thresholds are 0.8 × Rx
            times ``target_fractions``). None: every target is prescribed the case's Rx.
        target_fractions: thresholds for targets as fractions of their prescription (e.g. 0.95, 1.0).
        organ_thresholds_gy: thresholds for organs, Gy.
        temperature_gy: sigmoid width, Gy (sharp in Gy whatever the prescription).
    """

    def __init__(
        self,
        target_channels: Sequence[int],
        organ_channels: Sequence[int],
        target_levels: Sequence[float] | None = None,
        target_fractions: Sequence[float] = (0.93, 0.95, 0.97, 1.0),
        organ_thresholds_gy: Sequence[float] = (20.0, 30.0, 40.0, 50.0, 60.0, 65.0, 70.0),
        temperature_gy: float = 1.0,
    ) -> None:
        super().__init__()
        self.t, self.o = list(target_channels), list(organ_channels)
        levels = [1.0] * len(self.t) if target_levels is None else [float(v) for v in target_levels]
        if len(levels) != len(self.t) or (levels and min(levels) <= 0):
            raise ValueError(
                f"target_levels {list(target_levels or [])} must give one positive dose per target channel {self.t}"
            )
        self.t_rel = [v / max(levels) for v in levels] if levels else []  # each target's Rx / the case's Rx
        self.tf = list(target_fractions)
        self.og = list(organ_thresholds_gy)
        self.temp = float(temperature_gy)

    def soft_volume(self, dose_gy: torch.Tensor, mask: torch.Tensor, threshold_gy: torch.Tensor) -> torch.Tensor:
        """(B,) soft fraction of ``mask`` receiving at least ``threshold_gy`` (B,) (the definition;
        :meth:`forward` computes the same on the structure's voxels only)."""
        shape = (-1, *([1] * (dose_gy.ndim - 1)))
        s = torch.sigmoid((dose_gy - threshold_gy.view(shape)) / self.temp)
        m = mask.to(s.dtype)
        return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)

    def _soft_volumes(
        self, pred_gy: torch.Tensor, plan_gy: torch.Tensor, mask: torch.Tensor, thresholds_gy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K) soft volumes of prediction and plan at ``thresholds_gy`` (B, K), computed on the
        voxels of ``mask`` (B, 1, ...) only: a structure covers a few percent of a patch, so this is
        many times cheaper than a sigmoid over the whole patch per threshold."""
        m = mask.flatten(1)
        b, i = torch.nonzero(m > 0, as_tuple=True)
        w = m[b, i].to(pred_gy.dtype)
        n = pred_gy.shape[0]
        den = torch.zeros(n, dtype=w.dtype, device=w.device).index_add(0, b, w).clamp_min(1.0)
        thr = thresholds_gy[b]  # (M, K): each voxel's thresholds (targets: its case's Rx)
        out = []
        for dose in (pred_gy, plan_gy):
            v = dose.flatten(1)[b, i]
            s = torch.sigmoid((v[:, None] - thr) / self.temp) * w[:, None]
            zero = torch.zeros(n, thr.shape[1], dtype=s.dtype, device=s.device)
            out.append(zero.index_add(0, b, s) / den[:, None])
        return out[0], out[1]

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        masks: torch.Tensor | None = None,
        rx_gy: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor:
        if masks is None or rx_gy is None:
            raise ValueError("DVHLoss needs masks and rx_gy")
        rx = rx_gy.to(pred.dtype).view(-1)
        shape = (-1, *([1] * (pred.ndim - 1)))
        p, t = pred * rx.view(shape), target.to(pred.dtype) * rx.view(shape)
        fractions = torch.as_tensor(self.tf, dtype=pred.dtype, device=pred.device)
        organ = torch.as_tensor(self.og, dtype=pred.dtype, device=pred.device).expand(rx.shape[0], -1)
        # (channel, its thresholds (B, K), penalise under-dosage?): targets at their own prescription
        terms = [(c, rx[:, None] * (rel * fractions), True) for c, rel in zip(self.t, self.t_rel, strict=True)]
        terms += [(c, organ, False) for c in self.o]
        num = pred.new_zeros(())
        den = pred.new_zeros(())
        for c, thresholds, under in terms:
            if thresholds.shape[1] == 0:
                continue
            m = masks[:, c : c + 1]
            vp, vt = self._soft_volumes(p, t, m, thresholds)
            # targets: the prediction covers less than the plan; organs: it irradiates more
            term = F.relu(vt - vp) if under else F.relu(vp - vt)
            present = (m.flatten(1).sum(1) > 0).to(pred.dtype)[:, None]
            num = num + (term * present).sum()
            den = den + present.sum() * thresholds.shape[1]
        return num / den.clamp_min(1.0)


class CombinedDoseLoss(nn.Module):
    """Weighted sum of named losses; ``last_terms`` keeps each term's value for logging.

    Args:
        losses: name -> loss module.
        weights: name -> weight (default 1).
    """

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("at least one loss is needed")
        self.losses = nn.ModuleDict(dict(losses))
        self.weights = {k: float((weights or {}).get(k, 1.0)) for k in losses}
        unknown = set(weights or {}) - set(losses)
        if unknown:
            raise ValueError(f"weights given for unknown losses {sorted(unknown)}")
        self.last_terms: dict[str, float] = {}

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **kwargs: object) -> torch.Tensor:
        total = pred.new_zeros(())
        for name, loss in self.losses.items():
            v = loss(pred, target, **kwargs)
            self.last_terms[name] = float(v.detach())
            total = total + self.weights[name] * v
        return total
