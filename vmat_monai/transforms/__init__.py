"""Reusable MONAI transforms for dose prediction (depend on MONAI, numpy, scipy and torch only).

from vmat_monai.transforms import SignedDistanced, RandFlipPairsd, DoseToRelatived, BeamDosePriord
"""

from vmat_monai.transforms.array import (
    ChannelUnion,
    ConstraintToChannels,
    DoseToRelative,
    FlipPairs,
    SignedDistance,
    spacing_of,
)
from vmat_monai.transforms.beam_arrangement import PROTOCOLS, Beam, BeamArrangement, protocol
from vmat_monai.transforms.beam_prior import BeamDosePrior
from vmat_monai.transforms.dictionary import (
    BeamDosePriord,
    ChannelUniond,
    ConstraintToChannelsd,
    ConstraintVectord,
    DoseToRelatived,
    RandFlipPairsd,
    SignedDistanced,
)
from vmat_monai.transforms.presets import inference_transforms, train_transforms, val_transforms

__all__ = [
    "PROTOCOLS",
    "Beam",
    "BeamArrangement",
    "BeamDosePrior",
    "BeamDosePriord",
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
    "protocol",
    "spacing_of",
    "train_transforms",
    "val_transforms",
]
