"""The model-input spec: what the network is fed, worked out once from a structure set and the prior.

Every consumer takes it from here: the data module (training chain), the predictor (inference
chain, flip test-time augmentation) and the bundle configs (``"inputs": "$...model_inputs(...)"``,
then ``@inputs.in_channels`` and friends), so a new structure set or prior is one change here.

Network input channels, in order (docs/TRANSFORMS.md)::

    0             CT window (HU -1000..1500 -> 0..1)
    1 .. C        signed distances of the structure set's channels, in its order
    C+1 .. C+S    the beam dose prior: S = prior_channels (0: none, 1: all beams, 3: by entry side)

The prior's beams: each case's own arrangement (``beams`` in its datalist entry, from its RTPLAN
or the protocol recorded at conversion) unless ``prior_source`` is ``protocol``; cases without
one get ``prior_protocol`` (vmat_monai.transforms.beam_arrangement.PROTOCOLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmat_monai.constraints import ConstraintSpec, layout_for, mirror_constraint_pairs
from vmat_monai.structures import StructureSet, get_structure_set
from vmat_monai.transforms.beam_arrangement import protocol

__all__ = ["PRIOR_CHANNEL_CHOICES", "PRIOR_SOURCES", "ModelInputs", "model_inputs"]

PRIOR_CHANNEL_CHOICES = (0, 1, 3)
PRIOR_SOURCES = ("case", "protocol")


@dataclass(frozen=True)
class ModelInputs:
    """What the network sees and how the left-right flip acts on it (all indices 0-based).

    Attributes:
        structures: the structure set (channel order, targets, mirror pairs).
        layout: the constraint vector's layout (``constraints.layout_for``).
        prior_channels: beam dose prior channels appended to the input: 0, 1 or 3.
        prior_protocol: the beam protocol of cases without their own arrangement.
        prior_source: ``case`` (each case's own arrangement where it has one) or ``protocol``
            (``prior_protocol`` for every case).
    """

    structures: StructureSet
    layout: tuple[ConstraintSpec, ...]
    prior_channels: int = 1
    prior_protocol: str = "arc360"
    prior_source: str = "case"

    def __post_init__(self) -> None:
        protocol(self.prior_protocol)  # KeyError naming the known protocols
        if self.prior_source not in PRIOR_SOURCES:
            raise ValueError(f"prior_source must be one of {PRIOR_SOURCES}, got {self.prior_source!r}")
        if self.prior_channels not in PRIOR_CHANNEL_CHOICES:
            raise ValueError(
                f"prior_channels must be one of {PRIOR_CHANNEL_CHOICES} (0: no beam dose prior, 1: all beams in one "
                f"channel, 3: by the beams' entry side), got {self.prior_channels!r}"
            )

    @property
    def structure_set(self) -> str:
        """Name of the structure set."""
        return self.structures.name

    @property
    def n_structures(self) -> int:
        """C: mask / signed-distance channels."""
        return self.structures.n_channels

    @property
    def in_channels(self) -> int:
        """The network's input channels: 1 + C + prior channels."""
        return 1 + self.n_structures + self.prior_channels

    @property
    def n_constraints(self) -> int:
        """K: length of the constraint vector."""
        return len(self.layout)

    @property
    def target_channels(self) -> list[int]:
        """Mask channels of the targets, in the structure set's target order."""
        return [self.structures.index(t) for t in self.structures.targets]

    @property
    def target_levels(self) -> list[float]:
        """The targets' prescribed doses (Gy), in ``target_channels`` order."""
        return [float(v) for v in self.structures.targets.values()]

    @property
    def organ_channels(self) -> list[int]:
        """Mask channels of the organs at risk."""
        return [self.structures.index(o) for o in self.structures.organs]

    @property
    def primary_channel(self) -> int:
        """Mask channel of the primary (highest-dose) target."""
        return self.structures.index(self.structures.primary_target)

    @property
    def mirror_pairs(self) -> list[tuple[int, int]]:
        """(left, right) mask channels that swap in a left-right flip."""
        return [(self.structures.index(a), self.structures.index(b)) for a, b in self.structures.mirror_pairs]

    @property
    def input_pairs(self) -> list[tuple[int, int]]:
        """``mirror_pairs`` as channels of the network input (after the CT channel)."""
        return [(1 + i, 1 + j) for i, j in self.mirror_pairs]

    @property
    def constraint_pairs(self) -> list[tuple[int, int]]:
        """(left, right) entries of the constraint vector that swap in a left-right flip."""
        return mirror_constraint_pairs(self.structures)

    @property
    def prior_levels(self) -> list[float] | None:
        """Dose levels of the prior (the targets' prescriptions), None without a prior."""
        return self.target_levels if self.prior_channels else None

    @property
    def prior_sectors(self) -> int:
        """Sectors of the prior (1 or 3); 1 when there is none."""
        return self.prior_channels or 1

    def preset_kwargs(self) -> dict[str, object]:
        """Keyword arguments of the deterministic part shared by the preset chains
        (:func:`~vmat_monai.transforms.val_transforms` and friends)."""
        return {
            "target_channels": self.target_channels,
            "n_constraints": self.n_constraints,
            "prior_levels": self.prior_levels,
            "prior_sectors": self.prior_sectors,
            "prior_beams": self.prior_protocol,
            "prior_case_beams": self.prior_source == "case",
        }


def model_inputs(
    structure_set: str | Path | StructureSet | None = "prostate_sib",
    prior_channels: int = 1,
    prior_protocol: str = "arc360",
    prior_source: str = "case",
) -> ModelInputs:
    """The model-input spec of a structure set (name, JSON file or object), the prior's channel
    count, and where the prior's beams come from."""
    s = get_structure_set(structure_set)
    return ModelInputs(s, layout_for(s), int(prior_channels), str(prior_protocol), str(prior_source))
