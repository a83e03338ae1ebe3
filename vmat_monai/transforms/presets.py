"""Preset transform chains: the one definition of preprocessing for the bundles and the data module.

Input dict (a datalist entry, paths relative to the datalist folder already joined)::

    image: CT NIfTI (HU)    dose: dose NIfTI (Gy)    masks: C-channel mask NIfTI
    body: external mask     constraints: list of K floats    prescription_gy: float

Output dict::

    input: (1 + C, ...) float32 = [CT window, C signed-distance channels]
           (1 + C + S, ...) with ``prior_levels``: [..., S beam dose prior channels]
    image: (1, ...) CT window    sdf: (C, ...) signed distances    prior: (S, ...) beam dose prior
    dose: (1, ...) dose / prescription      body: (1, ...) mask      constraints: (K,) float32
    masks: (C, ...) binary (kept for losses and metrics)    target: (1, ...) union of targets

Training patches keep only ``input``, ``dose``, ``masks``, ``body``, ``constraints`` and
``prescription_gy`` (what the loss needs); validation volumes the same (full size; ``input`` as
float16, ``masks`` and ``body`` as uint8: cast them to float32 before use); inference keeps
everything above. The training cache holds each volume in compact types (masks, body and target
union as uint8; CT window, distances and prior as float16; dose float32); patches are cast back
to float32 after the crop.

CT window: HU in [``hu_min``, ``hu_max``] (default -1000..1500) maps linearly to [0, 1], clipped
(MONAI ``ScaleIntensityRanged``). Signed distances use ``sdf_margin_mm`` (default 150 mm: the
low-dose bath reaches well beyond 50 mm from the targets, and a patch far from the targets only
knows how far they are through these channels).
Geometry: ``Orientationd("RAS")`` then ``Spacingd`` to ``pixdim`` (default 2.5 mm isotropic);
masks use nearest-neighbour interpolation, CT and dose trilinear.
Beam dose prior (``prior_levels`` = the targets' prescribed doses, in ``target_channels`` order):
:class:`~vmat_monai.transforms.beam_prior.BeamDosePrior` from the CT in HU, the masks and the body,
relative to the primary target (median 1 there), in ``prior_sectors`` channels (S = 1 or 3), for
the case's own beam arrangement (optional input key ``beams``, consumed) or the ``prior_beams``
protocol (always, when ``prior_case_beams`` is False).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.transforms import (
    CastToTyped,
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandRotated,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from vmat_monai.transforms.dictionary import (
    BeamDosePriord,
    ChannelUniond,
    ConstraintVectord,
    DoseToRelatived,
    RandFlipPairsd,
    SignedDistanced,
)

__all__ = ["inference_transforms", "train_transforms", "val_transforms"]

HU_MIN, HU_MAX = -1000.0, 1500.0
DEFAULT_PIXDIM = (2.5, 2.5, 2.5)
DEFAULT_PATCH = (128, 128, 128)


# the parameters every chain passes to its deterministic part, by name (see _deterministic)
_DETERMINISTIC = (
    "target_channels", "pixdim", "sdf_margin_mm", "n_constraints", "hu_min", "hu_max", "prior_levels",
    "prior_sectors", "prior_beams", "prior_case_beams",
)  # fmt: skip


# Orientationd's axis labels (nibabel's: each pair names the low and the high end of a world axis),
# given explicitly because MONAI deprecates its default; the result is the same
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def _deterministic_of(args: Mapping[str, Any], with_dose: bool) -> list:
    """The deterministic part for a public chain's arguments (its ``locals()``)."""
    return _deterministic(with_dose=with_dose, **{k: args[k] for k in _DETERMINISTIC})


def _deterministic(
    *,
    target_channels: Sequence[int],
    with_dose: bool,
    pixdim: Sequence[float],
    sdf_margin_mm: float,
    n_constraints: int,
    hu_min: float,
    hu_max: float,
    prior_levels: Sequence[float] | None,
    prior_sectors: int = 1,
    prior_beams: str = "arc360",
    prior_case_beams: bool = True,
) -> list:
    images = ["image", "masks", "body", *(["dose"] if with_dose else [])]
    prior = (
        [
            BeamDosePriord(
                "image",
                target_channels,
                prior_levels,
                output_key="prior",
                sectors=prior_sectors,
                beams=prior_beams,
                use_case_beams=prior_case_beams,
            )
        ]
        if prior_levels
        else [DeleteItemsd("beams")]  # the case's arrangement is only for the prior
    )
    modes = {"image": "bilinear", "masks": "nearest", "body": "nearest", "dose": "bilinear"}
    return [
        LoadImaged(images, image_only=True),
        EnsureChannelFirstd(images),
        Orientationd(images, axcodes="RAS", labels=RAS_LABELS),
        Spacingd(images, pixdim=tuple(pixdim), mode=[modes[k] for k in images]),
        SignedDistanced("masks", output_keys="sdf", margin_mm=sdf_margin_mm),
        *prior,  # from HU: before the CT window
        ScaleIntensityRanged("image", a_min=hu_min, a_max=hu_max, b_min=0.0, b_max=1.0, clip=True),
        *([DoseToRelatived("dose", prescription_key="prescription_gy")] if with_dose else []),
        ConstraintVectord("constraints", length=n_constraints),
        ChannelUniond("masks", channels=target_channels, output_key="target"),
        EnsureTyped([*images, "sdf", "target", *(["prior"] if prior_levels else [])], dtype="float32", track_meta=True),
    ]


def _concat(prior_levels: Sequence[float] | None) -> ConcatItemsd:
    """The network input, built after any random spatial transform so all its channels move together."""
    return ConcatItemsd(["image", "sdf", *(["prior"] if prior_levels else [])], name="input")


def train_transforms(
    target_channels: Sequence[int],
    mirror_pairs: Sequence[Sequence[int]] = (),
    patch_size: Sequence[int] = DEFAULT_PATCH,
    num_samples: int = 2,
    pos_fraction: float = 2 / 3,
    centres_in_body: bool = False,
    flip_prob: float = 0.5,
    pixdim: Sequence[float] = DEFAULT_PIXDIM,
    sdf_margin_mm: float = 150.0,
    n_constraints: int = 13,
    hu_min: float = HU_MIN,
    hu_max: float = HU_MAX,
    prior_levels: Sequence[float] | None = None,
    prior_sectors: int = 1,
    rotate_deg: float = 0.0,
    constraint_pairs: Sequence[Sequence[int]] = (),
    prior_beams: str = "arc360",
    prior_case_beams: bool = True,
) -> Compose:
    """Training chain: deterministic part (cacheable) + padding, random patches, L-R flips and
    (optionally) rotations about the patient's long axis.

    Args:
        target_channels: mask channels of the targets (patch centres favour them).
        mirror_pairs: (left, right) channel pairs swapped by the flip.
        patch_size: patch size in voxels (default 128³).
        num_samples: patches drawn per volume.
        pos_fraction: share of patches centred on a target voxel (the rest anywhere else).
        centres_in_body: True: the patches not centred on a target are centred on a voxel of
            ``body`` (for OpenKBP the possible-dose mask), so none is spent on the air around the
            patient; False: anywhere in the volume outside the targets.
        flip_prob: probability of a left-right flip.
        pixdim: resampled voxel size, mm.
        sdf_margin_mm: signed-distance clipping distance, mm.
        n_constraints: length of the constraint vector.
        hu_min: CT value mapped to 0 (HU).
        hu_max: CT value mapped to 1 (HU).
        prior_levels: the targets' prescribed doses; when given, the beam dose prior becomes the
            last input channel(s).
        prior_sectors: channels of the prior: 1 (the whole arc) or 3 (by the beams' entry side).
        rotate_deg: largest rotation of a patch in the axial plane (about the S-I axis), degrees,
            drawn uniformly in ±``rotate_deg`` for every patch; 0 (default) turns it off. Every
            channel and the dose turn together (a full arc turns with the patient); masks
            nearest-neighbour, the rest trilinear, the patch's edge values fill the corners.
        constraint_pairs: (left, right) entries of the constraint vector swapped by the flip
            (``ModelInputs.constraint_pairs`` of vmat_monai.engine.inputs: one-sided goals such as each parotid's
            Dmean); without them a flipped patch would carry the other side's goal.
        prior_beams: beam protocol of cases without their own arrangement (vmat_monai.transforms.beam_arrangement).
        prior_case_beams: False: the protocol for every case.
    """
    if not 0 <= pos_fraction <= 1:
        raise ValueError(f"pos_fraction must be in [0, 1], got {pos_fraction}")
    if not 0 <= rotate_deg <= 180:
        raise ValueError(f"rotate_deg must be in [0, 180] degrees, got {rotate_deg}")
    keys = ["image", "sdf", "dose", "masks", "body", *(["prior"] if prior_levels else [])]
    nearest = {"masks", "body"}
    rotate = (
        [
            RandRotated(
                keys,
                range_z=math.radians(rotate_deg),  # about the third (S-I) axis after Orientationd("RAS")
                prob=1.0,
                mode=["nearest" if k in nearest else "bilinear" for k in keys],
                padding_mode="border",
            )
        ]
        if rotate_deg > 0
        else []
    )
    compact = {"image": torch.float16, "sdf": torch.float16, "prior": torch.float16}
    compact |= {"masks": torch.uint8, "body": torch.uint8, "target": torch.uint8}
    small = [k for k in [*keys, "target"] if k in compact]
    return Compose(
        [
            *_deterministic_of(locals(), with_dose=True),
            # the cached volume in compact types (masks as bytes, CT window, distances and prior in
            # half precision; the dose stays float32): about 2.7 times less memory per case
            CastToTyped(small, dtype=[compact[k] for k in small]),
            SpatialPadd([*keys, "target"], spatial_size=tuple(patch_size)),  # target: the patch centres
            RandCropByPosNegLabeld(
                keys,
                label_key="target",
                spatial_size=tuple(patch_size),
                pos=pos_fraction,
                neg=1 - pos_fraction,
                num_samples=num_samples,
                # the non-target centres only where body > 0
                image_key="body" if centres_in_body else None,
                image_threshold=0,
            ),
            CastToTyped([k for k in keys if k in compact], dtype=torch.float32),
            RandFlipPairsd(
                keys,
                prob=flip_prob,
                spatial_axis=0,
                pairs=mirror_pairs,
                pair_keys=["sdf", "masks"],
                vector_key="constraints",
                vector_pairs=constraint_pairs,
            ),
            *rotate,
            _concat(prior_levels),
            # a patch keeps what training uses: the input's parts and the full-volume target union go
            DeleteItemsd(["image", "sdf", "prior", "target"]),
        ]
    )


def val_transforms(
    target_channels: Sequence[int],
    pixdim: Sequence[float] = DEFAULT_PIXDIM,
    sdf_margin_mm: float = 150.0,
    n_constraints: int = 13,
    hu_min: float = HU_MIN,
    hu_max: float = HU_MAX,
    prior_levels: Sequence[float] | None = None,
    prior_sectors: int = 1,
    prior_beams: str = "arc360",
    prior_case_beams: bool = True,
) -> Compose:
    """Validation chain: full volumes with dose (for sliding-window evaluation); keeps ``input``,
    ``dose``, ``masks``, ``body``, ``constraints`` and ``prescription_gy`` (the parts of the input
    once only: validation volumes stay cached for the whole training)."""
    det = _deterministic_of(locals(), with_dose=True)
    return Compose(
        [
            *det,
            _concat(prior_levels),
            DeleteItemsd(["image", "sdf", "prior", "target"]),
            # cached for the whole training: the input in half precision, masks and body as bytes
            # (DosePredictionModule.validation_step casts them back to float32)
            CastToTyped(["input", "masks", "body"], dtype=[torch.float16, torch.uint8, torch.uint8]),
        ]
    )


def inference_transforms(
    target_channels: Sequence[int],
    pixdim: Sequence[float] = DEFAULT_PIXDIM,
    sdf_margin_mm: float = 150.0,
    n_constraints: int = 13,
    hu_min: float = HU_MIN,
    hu_max: float = HU_MAX,
    prior_levels: Sequence[float] | None = None,
    prior_sectors: int = 1,
    prior_beams: str = "arc360",
    prior_case_beams: bool = True,
) -> Compose:
    """Inference chain: like validation, without dose, keeping every part (``image``, ``sdf``,
    ``prior``, ``target``) for outputs and figures."""
    det = _deterministic_of(locals(), with_dose=False)
    return Compose([*det, _concat(prior_levels)])
