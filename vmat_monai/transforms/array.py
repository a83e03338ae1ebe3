"""Array transforms for dose prediction (the logic; dictionary wrappers live in dictionary.py).

Every transform takes channel-first arrays (numpy, torch or MONAI MetaTensor). Physical spacing
comes from the MetaTensor affine when there is one, never from an assumed array order.
This package depends on MONAI, numpy, scipy and torch only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import Flip, Transform
from monai.transforms.utils import distance_transform_edt
from monai.utils import TransformBackends, convert_to_tensor

__all__ = [
    "ChannelUnion",
    "ConstraintToChannels",
    "DoseToRelative",
    "FlipPairs",
    "SignedDistance",
    "spacing_of",
    "swap_entries",
]


def spacing_of(img: NdarrayOrTensor, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Voxel spacing (mm) of the spatial dims of a channel-first image.

    ``spacing`` wins when given; otherwise the MetaTensor affine; otherwise an error (guessing
    1 mm would silently give wrong distances).
    """
    nd = img.ndim - 1
    if spacing is not None:
        sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
        return np.broadcast_to(sp, (nd,)).copy() if sp.size == 1 else sp
    if isinstance(img, MetaTensor):
        return np.asarray(affine_to_spacing(img.affine, r=nd), dtype=np.float64)
    raise ValueError("spacing unknown: pass a MetaTensor with an affine or give spacing explicitly (mm)")


class SignedDistance(Transform):
    """Binary masks (C, *spatial) -> signed distance to each structure's surface, scaled to [-1, 1].

    The distance is in mm (physical spacing), negative inside, positive outside, clipped to
    ``±margin_mm`` and divided by ``margin_mm``. The surface lies half a voxel beyond the
    outermost mask voxel centres. An empty channel (structure absent) becomes ``empty_value``
    (default +1: "at least ``margin_mm`` away", never a nearby organ); a channel that fills the
    whole image becomes -1.

    Only a box around each structure (its extent plus the margin) is transformed, so small
    structures cost little; the result is the same as a full-image transform.

    Args:
        margin_mm: clipping distance, mm.
        empty_value: value of an absent structure.
        spacing: voxel spacing (mm); default: from the MetaTensor affine.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self, margin_mm: float = 50.0, empty_value: float = 1.0, spacing: Sequence[float] | None = None
    ) -> None:
        if margin_mm <= 0:
            raise ValueError(f"margin_mm must be > 0, got {margin_mm}")
        self.margin_mm = float(margin_mm)
        self.empty_value = float(empty_value)
        self.spacing = spacing

    def _channel(self, m: np.ndarray, sp: np.ndarray) -> np.ndarray:
        out = np.full(m.shape, 1.0, dtype=np.float32)
        if not m.any():
            out[:] = self.empty_value
            return out
        if m.all():
            out[:] = -1.0
            return out
        pad = np.ceil(self.margin_mm / sp).astype(int) + 1
        nz = np.nonzero(m)
        lo = np.maximum([a.min() for a in nz] - pad, 0)
        hi = np.minimum([a.max() + 1 for a in nz] + pad, m.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        mb = m[box]
        d_out = distance_transform_edt(~mb[None], sampling=list(sp))[0]
        d_in = distance_transform_edt(mb[None], sampling=list(sp))[0]
        half = 0.5 * float(sp.min())
        sdf = np.where(mb, -(d_in - half), d_out - half)
        out[box] = np.clip(sdf, -self.margin_mm, self.margin_mm) / self.margin_mm
        return out

    def __call__(self, img: NdarrayOrTensor, spacing: Sequence[float] | None = None) -> NdarrayOrTensor:
        """Args:
        img: binary masks, channel first.
        spacing: overrides the transform's and the affine's spacing, mm.
        """
        sp = spacing_of(img, spacing if spacing is not None else self.spacing)
        arr = np.asarray(convert_to_tensor(img, track_meta=False).detach().cpu().numpy()) > 0.5
        out = np.stack([self._channel(arr[c], sp) for c in range(arr.shape[0])])
        if isinstance(img, MetaTensor):
            return MetaTensor(torch.from_numpy(out), meta=img.meta, applied_operations=list(img.applied_operations))
        if isinstance(img, torch.Tensor):
            return torch.from_numpy(out).to(img.device)
        return out


class DoseToRelative(Transform):
    """Dose in Gy -> dose / prescription (what the network sees); :meth:`inverse` gives Gy back.

    Args:
        prescription_gy: the case's primary prescription, Gy (can be given per call).
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, prescription_gy: float | None = None) -> None:
        self.prescription_gy = prescription_gy

    def resolve(self, rx: float | None) -> float:
        """The prescription to use: ``rx`` if given, else the one set at construction (Gy)."""
        rx = self.prescription_gy if rx is None else rx
        if rx is None or not np.isfinite(rx) or rx <= 0:
            raise ValueError(f"a positive prescription (Gy) is needed, got {rx}")
        return float(rx)

    def __call__(self, img: NdarrayOrTensor, prescription_gy: float | None = None) -> NdarrayOrTensor:
        return img / self.resolve(prescription_gy)

    def inverse(self, img: NdarrayOrTensor, prescription_gy: float | None = None) -> NdarrayOrTensor:
        return img * self.resolve(prescription_gy)


class ConstraintToChannels(Transform):
    """A constraint vector (K,) -> K constant channels of a given spatial shape, float32.

    Lets any MONAI network without a conditioning input receive the constraints as channels.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, vector: NdarrayOrTensor, spatial_shape: Sequence[int]) -> torch.Tensor:
        if isinstance(vector, torch.Tensor):
            v = vector.detach().to(torch.float32).reshape(-1)
        else:
            v = torch.as_tensor(np.asarray(vector, dtype=np.float32)).reshape(-1)
        return v.view(-1, *([1] * len(spatial_shape))).expand(-1, *spatial_shape).clone()


class ChannelUnion(Transform):
    """Union (logical or) of selected channels of a binary image -> one channel."""

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, channels: Sequence[int]) -> None:
        if not channels:
            raise ValueError("at least one channel is needed")
        self.channels = list(channels)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        sel = img[self.channels] > 0.5
        if isinstance(sel, np.ndarray):
            return sel.any(axis=0, keepdims=True).astype(np.float32)
        return sel.any(dim=0, keepdim=True).float()


class FlipPairs(Transform):
    """Flip along one spatial axis and swap paired channels (left/right organs).

    After ``Orientationd(axcodes="RAS")`` spatial axis 0 runs right-left, so a left-right flip
    is ``spatial_axis=0`` and the femoral heads (or parotids) must trade channels.

    Args:
        spatial_axis: spatial axis to flip (0 = the first axis after the channel).
        pairs: channel index pairs to swap; empty for images without paired channels.
    """

    backend = Flip.backend

    def __init__(self, spatial_axis: int = 0, pairs: Sequence[Sequence[int]] = ()) -> None:
        self.flipper = Flip(spatial_axis=spatial_axis)
        self.pairs = [tuple(p) for p in pairs]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        out = self.flipper(img)
        return swap_entries(out, self.pairs) if self.pairs else out


def swap_entries(values: Any, pairs: Sequence[Sequence[int]]) -> Any:
    """A copy of ``values`` (array, tensor, list or tuple) with the entries along its first axis
    swapped within each index pair (channels of an image, entries of a constraint vector)."""
    perm = list(range(len(values)))
    for i, j in pairs:
        perm[i], perm[j] = j, i
    if isinstance(values, (list, tuple)):
        return type(values)(values[k] for k in perm)
    return values[perm]
