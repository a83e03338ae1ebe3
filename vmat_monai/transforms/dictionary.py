"""Dictionary wrappers of the array transforms (MONAI ``Xd`` style).

Each wrapper copies the dict, walks ``self.key_iterator(d)`` and calls its array transform; a
random wrapper draws once and applies the same draw to every key.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.utils import convert_to_tensor

from vmat_monai.transforms.array import (
    ChannelUnion,
    ConstraintToChannels,
    DoseToRelative,
    FlipPairs,
    SignedDistance,
    swap_entries,
)
from vmat_monai.transforms.beam_arrangement import BeamArrangement
from vmat_monai.transforms.beam_prior import BeamDosePrior

__all__ = [
    "BeamDosePriord",
    "ChannelUniond",
    "ConstraintToChannelsd",
    "ConstraintVectord",
    "DoseToRelatived",
    "RandFlipPairsd",
    "SignedDistanced",
]


class SignedDistanced(MapTransform):
    """Dictionary wrapper of :class:`SignedDistance`.

    Args:
        keys: mask keys to transform.
        output_keys: where to write the distances (default: in place). One per key.
        margin_mm: clipping distance, mm.
        empty_value: value of an absent structure.
        allow_missing_keys: skip absent keys.
    """

    backend = SignedDistance.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: KeysCollection | None = None,
        margin_mm: float = 50.0,
        empty_value: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = list(output_keys) if output_keys is not None else list(self.keys)
        if isinstance(output_keys, str):
            self.output_keys = [output_keys]
        if len(self.output_keys) != len(self.keys):
            raise ValueError("one output key per key is needed")
        self.sdf = SignedDistance(margin_mm=margin_mm, empty_value=empty_value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        out_for = dict(zip(self.keys, self.output_keys, strict=True))
        for key in self.key_iterator(d):
            d[out_for[key]] = self.sdf(d[key])
        return d


class DoseToRelatived(MapTransform, InvertibleTransform):
    """Dose in Gy -> dose / prescription, invertible (``Invertd`` returns Gy).

    Args:
        keys: dose keys.
        prescription_key: key holding the case's primary prescription in Gy.
        prescription_gy: fixed prescription used when ``prescription_key`` is absent.
        allow_missing_keys: skip absent keys.
    """

    backend = DoseToRelative.backend

    def __init__(
        self,
        keys: KeysCollection,
        prescription_key: str = "prescription_gy",
        prescription_gy: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.prescription_key = prescription_key
        self.converter = DoseToRelative(prescription_gy)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        rx = d.get(self.prescription_key)
        rx = float(rx) if rx is not None else None
        for key in self.key_iterator(d):
            used = self.converter.resolve(rx)
            d[key] = self.converter(convert_to_tensor(d[key], track_meta=True), used)
            self.push_transform(d[key], extra_info={"prescription_gy": used})
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            xform = self.pop_transform(d[key])
            d[key] = self.converter.inverse(d[key], xform["extra_info"]["prescription_gy"])
        return d


class ConstraintVectord(MapTransform):
    """Constraint vector (list/array) -> float32 tensor of a checked length.

    Args:
        keys: constraint keys.
        length: expected number of values (13 for the prostate layout).
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, length: int = 13, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.length = int(length)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            v = torch.as_tensor(np.asarray(d[key], dtype=np.float32)).reshape(-1)
            if v.numel() != self.length or not torch.isfinite(v).all():
                raise ValueError(f"{key}: expected {self.length} finite values, got {v.tolist()}")
            d[key] = v
        return d


class ConstraintToChannelsd(MapTransform):
    """Append a constraint vector to an image as constant channels.

    Args:
        keys: image keys to extend.
        constraint_key: key of the (K,) constraint vector.
        allow_missing_keys: skip absent keys.
    """

    backend = ConstraintToChannels.backend

    def __init__(
        self, keys: KeysCollection, constraint_key: str = "constraints", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.constraint_key = constraint_key
        self.to_channels = ConstraintToChannels()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            ch = self.to_channels(d[self.constraint_key], img.shape[1:]).to(img.device)
            d[key] = torch.cat([img, ch.to(img.dtype)], dim=0)
        return d


class ChannelUniond(MapTransform):
    """Union of selected channels of a binary image, written to ``output_key`` (e.g. a target label).

    Args:
        keys: the multi-channel mask key.
        channels: channel indices to unite.
        output_key: where the one-channel union goes.
        allow_missing_keys: skip absent keys.
    """

    backend = ChannelUnion.backend

    def __init__(
        self, keys: KeysCollection, channels: Sequence[int], output_key: str, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.union = ChannelUnion(channels)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.union(d[key])
        return d


class RandFlipPairsd(RandomizableTransform, MapTransform):
    """Random left-right flip of every key, swapping paired channels in ``pair_keys``.

    One draw per call is applied to all keys, so images, masks, distances and dose stay aligned.

    Args:
        keys: keys to flip.
        prob: probability of flipping.
        spatial_axis: the left-right spatial axis (0 after ``Orientationd(axcodes="RAS")``).
        pairs: (left, right) channel index pairs.
        pair_keys: keys whose channels follow the structure order (masks, distances).
        vector_key: key of a 1-D vector (the constraint vector) whose entries ``vector_pairs``
            are swapped with the flip; ignored when absent from the data.
        vector_pairs: (left, right) index pairs of that vector (``mirror_constraint_pairs``).
        allow_missing_keys: skip absent keys.
    """

    backend = FlipPairs.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        spatial_axis: int = 0,
        pairs: Sequence[Sequence[int]] = (),
        pair_keys: KeysCollection = (),
        vector_key: str = "constraints",
        vector_pairs: Sequence[Sequence[int]] = (),
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.flip = FlipPairs(spatial_axis)
        self.flip_pairs = FlipPairs(spatial_axis, pairs)
        self.pair_keys = {pair_keys} if isinstance(pair_keys, str) else set(pair_keys)
        self.vector_key, self.vector_pairs = vector_key, [tuple(p) for p in vector_pairs]

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandFlipPairsd:
        super().set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = (self.flip_pairs if key in self.pair_keys else self.flip)(d[key])
        if self.vector_pairs and self.vector_key in d:
            d[self.vector_key] = swap_entries(d[self.vector_key], self.vector_pairs)
        return d


class BeamDosePriord(MapTransform):
    """Dictionary wrapper of :class:`~vmat_monai.transforms.beam_prior.BeamDosePrior`.

    Reads the CT (HU, before any intensity windowing), the masks and the body; writes the
    (S, *spatial) relative prior dose to ``output_key`` (S = ``sectors``, 1 by default). The
    case's beam arrangement is read from ``beams_key`` (a :meth:`BeamArrangement.to_dict` dict,
    as the datalist carries it from ``case.json``) and removed from the output (a nested dict does
    not batch); a case without one, or every case when ``use_case_beams`` is False, gets the
    ``beams`` protocol.

    Args:
        keys: the CT key.
        target_channels: mask channels of the targets.
        target_levels: their prescribed doses (only ratios matter).
        masks_key: key of the (C, *spatial) masks.
        body_key: key of the external contour.
        output_key: where the prior goes.
        beams: the protocol (name or arrangement) for cases without their own.
        beams_key: key of the case's own arrangement.
        use_case_beams: False: always the protocol (a lever; the case's own is still removed).
        allow_missing_keys: skip absent keys.
        prior_kwargs: further :class:`BeamDosePrior` arguments (``sectors``, ``arc_step_deg``, ``grid_mm``, ...).
    """

    backend = BeamDosePrior.backend

    def __init__(
        self,
        keys: KeysCollection,
        target_channels: Sequence[int],
        target_levels: Sequence[float],
        masks_key: str = "masks",
        body_key: str = "body",
        output_key: str = "prior",
        beams: BeamArrangement | str = "arc360",
        beams_key: str = "beams",
        use_case_beams: bool = True,
        allow_missing_keys: bool = False,
        **prior_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.prior = BeamDosePrior(target_channels, target_levels, beams=beams, **prior_kwargs)
        self.masks_key, self.body_key, self.output_key = masks_key, body_key, output_key
        self.beams_key, self.use_case_beams = beams_key, bool(use_case_beams)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        own = d.pop(self.beams_key, None)
        arrangement = None
        if own is not None and self.use_case_beams:
            arrangement = own if isinstance(own, BeamArrangement) else BeamArrangement.from_dict(own)
        for key in self.key_iterator(d):
            d[self.output_key] = self.prior(d[key], d[self.masks_key], d[self.body_key], arrangement)
        return d
