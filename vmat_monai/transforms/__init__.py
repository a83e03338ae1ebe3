"""Reusable MONAI transforms for dose prediction (depend on MONAI, numpy, scipy and torch only).

from vmat_monai.transforms import SignedDistanced, RandFlipPairsd, DoseToRelatived, ArcDosePriord
"""

from vmat_monai.transforms.arc_prior import ArcDosePrior
from vmat_monai.transforms.array import (
    ChannelUnion,
    ConstraintToChannels,
    DoseToRelative,
    FlipPairs,
    SignedDistance,
    spacing_of,
)
from vmat_monai.transforms.dictionary import (
    ArcDosePriord,
    ChannelUniond,
    ConstraintToChannelsd,
    ConstraintVectord,
    DoseToRelatived,
    RandFlipPairsd,
    SignedDistanced,
)
from vmat_monai.transforms.presets import inference_transforms, train_transforms, val_transforms

__all__ = [
    "ArcDosePrior",
    "ArcDosePriord",
    "ChannelUnion",
    "ChannelUniond",
    "ConstraintToChannels",
    "ConstraintToChannelsd",
    "ConstraintVectord",
    "DoseToRelative",
    "DoseToRelatived",
    "FlipPairs",
    "RandFlipPairsd",
    "SignedDistance",
    "SignedDistanced",
    "inference_transforms",
    "spacing_of",
    "train_transforms",
    "val_transforms",
]
