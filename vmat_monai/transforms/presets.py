"""Preset transform chains: the one definition of preprocessing for the bundles and the data module.

Input dict (a datalist entry, paths relative to the datalist folder already joined)::

    image: CT NIfTI (HU)    dose: dose NIfTI (Gy)    masks: C-channel mask NIfTI
    body: external mask     constraints: list of K floats    prescription_gy: float

Output dict::

    input: (1 + C, ...) float32 = [CT window, C signed-distance channels]
           (1 + C + S, ...) with ``prior_levels``: [..., S arc dose prior channels]
    image: (1, ...) CT window    sdf: (C, ...) signed distances    prior: (S, ...) arc dose prior
    dose: (1, ...) dose / prescription      body: (1, ...) mask      constraints: (K,) float32
    masks: (C, ...) binary (kept for losses and metrics)    target: (1, ...) union of targets

Training patches keep only ``input``, ``dose``, ``masks``, ``body``, ``constraints`` and
``prescription_gy`` (what the loss needs); validation and inference keep everything above.

CT window: HU in [``hu_min``, ``hu_max``] (default -1000..1500) maps linearly to [0, 1], clipped
(MONAI ``ScaleIntensityRanged``). Signed distances use ``sdf_margin_mm`` (default 150 mm: the
low-dose bath reaches well beyond 50 mm from the targets, and a patch far from the targets only
knows how far they are through these channels).
Geometry: ``Orientationd("RAS")`` then ``Spacingd`` to ``pixdim`` (default 2.5 mm isotropic);
masks use nearest-neighbour interpolation, CT and dose trilinear.
Arc dose prior (``prior_levels`` = the targets' prescribed doses, in ``target_channels`` order):
:class:`~vmat_monai.transforms.arc_prior.ArcDosePrior` from the CT in HU, the masks and the body,
relative to the primary target (median 1 there), in ``prior_sectors`` channels (S = 1 or 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.transforms import (
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    FgBgToIndicesd,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandRotated,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from vmat_monai.transforms.dictionary import (
    ArcDosePriord,
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


def _deterministic(
    target_channels: Sequence[int],
    with_dose: bool,
    pixdim: Sequence[float],
    sdf_margin_mm: float,
    n_constraints: int,
    hu_min: float,
    hu_max: float,
    prior_levels: Sequence[float] | None,
    prior_sectors: int = 1,
) -> list:
    images = ["image", "masks", "body", *(["dose"] if with_dose else [])]
    prior = (
        [ArcDosePriord("image", target_channels, prior_levels, output_key="prior", sectors=prior_sectors)]
        if prior_levels
        else []
    )
    modes = {"image": "bilinear", "masks": "nearest", "body": "nearest", "dose": "bilinear"}
    return [
        LoadImaged(images, image_only=True),
        EnsureChannelFirstd(images),
        Orientationd(images, axcodes="RAS"),
        Spacingd(images, pixdim=tuple(pixdim), mode=[modes[k] for k in images]),
        SignedDistanced("masks", output_keys="sdf", margin_mm=sdf_margin_mm),
        *prior,  # from HU: before the CT window
        ScaleIntensityRanged("image", a_min=hu_min, a_max=hu_max, b_min=0.0, b_max=1.0, clip=True),
        *([DoseToRelatived("dose", prescription_key="prescription_gy")] if with_dose else []),
        ConstraintVectord("constraints", length=n_constraints),
        ChannelUniond("masks", channels=target_channels, output_key="target"),
        EnsureTyped([*images, "sdf", "target", *(["prior"] if prior else [])], dtype="float32", track_meta=True),
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
) -> Compose:
    """Training chain: deterministic part (cacheable) + padding, random patches, L-R flips and
    (optionally) rotations about the patient's long axis.

    Args:
        target_channels: mask channels of the targets (patch centres favour them).
        mirror_pairs: (left, right) channel pairs swapped by the flip.
        patch_size: patch size in voxels (default 128³).
        num_samples: patches drawn per volume.
        pos_fraction: share of patches centred on a target voxel (the rest anywhere else).
        flip_prob: probability of a left-right flip.
        pixdim: resampled voxel size, mm.
        sdf_margin_mm: signed-distance clipping distance, mm.
        n_constraints: length of the constraint vector.
        hu_min: CT value mapped to 0 (HU).
        hu_max: CT value mapped to 1 (HU).
        prior_levels: the targets' prescribed doses; when given, the arc dose prior becomes the
            last input channel(s).
        prior_sectors: channels of the prior: 1 (the whole arc) or 3 (by the beams' entry side).
        rotate_deg: largest rotation of a patch in the axial plane (about the S-I axis), degrees,
            drawn uniformly in ±``rotate_deg`` for every patch; 0 (default) turns it off. Every
            channel and the dose turn together (a full arc turns with the patient); masks
            nearest-neighbour, the rest trilinear, the patch's edge values fill the corners.
        constraint_pairs: (left, right) entries of the constraint vector swapped by the flip
            (``ModelInputs.constraint_pairs`` of vmat_monai.engine.inputs: one-sided goals such as each parotid's
            Dmean); without them a flipped patch would carry the other side's goal.
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
    return Compose(
        [
            *_deterministic(
                target_channels, True, pixdim, sdf_margin_mm, n_constraints, hu_min, hu_max, prior_levels, prior_sectors
            ),
            SpatialPadd([*keys, "target"], spatial_size=tuple(patch_size)),  # target: the patch centres
            # voxel indices of targets / background, computed once and cached with the volume
            FgBgToIndicesd("target", fg_postfix="_fg", bg_postfix="_bg"),
            RandCropByPosNegLabeld(
                keys,
                label_key="target",
                spatial_size=tuple(patch_size),
                pos=pos_fraction,
                neg=1 - pos_fraction,
                num_samples=num_samples,
                fg_indices_key="target_fg",
                bg_indices_key="target_bg",
            ),
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
            # a patch keeps what training uses: the input's parts, the full-volume target union and
            # the per-volume index lists (which do not batch) are dropped
            DeleteItemsd(["image", "sdf", "prior", "target", "target_fg", "target_bg"]),
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
) -> Compose:
    """Validation chain: full volumes with dose (for sliding-window evaluation)."""
    det = _deterministic(
        target_channels, True, pixdim, sdf_margin_mm, n_constraints, hu_min, hu_max, prior_levels, prior_sectors
    )
    return Compose([*det, _concat(prior_levels)])


def inference_transforms(
    target_channels: Sequence[int],
    pixdim: Sequence[float] = DEFAULT_PIXDIM,
    sdf_margin_mm: float = 150.0,
    n_constraints: int = 13,
    hu_min: float = HU_MIN,
    hu_max: float = HU_MAX,
    prior_levels: Sequence[float] | None = None,
    prior_sectors: int = 1,
) -> Compose:
    """Inference chain: like validation, without dose."""
    det = _deterministic(
        target_channels, False, pixdim, sdf_margin_mm, n_constraints, hu_min, hu_max, prior_levels, prior_sectors
    )
    return Compose([*det, _concat(prior_levels)])
