"""Structure sets: the canonical channel order, targets, organs and left/right pairs.

A structure set is data, not code. The prostate SIB set is the default; other sites (the
OpenKBP head-and-neck set) are chosen by name or loaded from a JSON file with the same keys as
:meth:`StructureSet.to_dict`. No other module hard-codes a channel index or a channel count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OPENKBP_HN",
    "PROSTATE_SIB",
    "STRUCTURE_SETS",
    "StructureSet",
    "get_structure_set",
]


@dataclass(frozen=True)
class StructureSet:
    """An ordered set of structures: one mask channel per entry of ``channels``.

    Args:
        name: identifier of the set (``"prostate_sib"``).
        channels: canonical structure names in channel order.
        targets: target name -> prescribed dose in Gy (the primary target has the highest dose).
        organs: organs at risk, in channel order.
        mirror_pairs: pairs of (left, right) structures swapped by a left-right flip.
        fractions: number of fractions of the standard prescription.
        body: canonical name of the external contour (not a mask channel).
    """

    name: str
    channels: tuple[str, ...]
    targets: Mapping[str, float]
    organs: tuple[str, ...]
    mirror_pairs: tuple[tuple[str, str], ...] = ()
    fractions: int = 1
    body: str = "BODY"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"structure set {self.name!r}: duplicate channel names")
        unknown = [s for s in (*self.targets, *self.organs) if s not in self.channels]
        for pair in self.mirror_pairs:
            unknown += [s for s in pair if s not in self.channels]
        if unknown:
            raise ValueError(f"structure set {self.name!r}: {unknown} are not channels")
        if not self.targets:
            raise ValueError(f"structure set {self.name!r}: at least one target is needed")

    @property
    def n_channels(self) -> int:
        """Number of mask channels."""
        return len(self.channels)

    @property
    def prescription_gy(self) -> float:
        """Primary prescription (the highest target dose), Gy."""
        return max(self.targets.values())

    @property
    def primary_target(self) -> str:
        """Name of the target with the highest dose."""
        return max(self.targets, key=lambda k: self.targets[k])

    def index(self, name: str) -> int:
        """Channel index of a canonical structure name."""
        try:
            return self.channels.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not in structure set {self.name!r}: {self.channels}") from None

    def mirror_permutation(self) -> list[int]:
        """Channel permutation that swaps every left/right pair (identity elsewhere)."""
        perm = list(range(self.n_channels))
        for left, right in self.mirror_pairs:
            i, j = self.index(left), self.index(right)
            perm[i], perm[j] = j, i
        return perm

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (the format :meth:`from_dict` reads)."""
        return {
            "name": self.name,
            "channels": list(self.channels),
            "targets": dict(self.targets),
            "organs": list(self.organs),
            "mirror_pairs": [list(p) for p in self.mirror_pairs],
            "fractions": self.fractions,
            "body": self.body,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StructureSet:
        """Build a set from a mapping with the keys of :meth:`to_dict`."""
        return cls(
            name=str(d["name"]),
            channels=tuple(d["channels"]),
            targets={str(k): float(v) for k, v in d["targets"].items()},
            organs=tuple(d.get("organs", ())),
            mirror_pairs=tuple(tuple(p) for p in d.get("mirror_pairs", ())),  # type: ignore[misc]
            fractions=int(d.get("fractions", 1)),
            body=str(d.get("body", "BODY")),
            extra=dict(d.get("extra", {})),
        )


PROSTATE_SIB = StructureSet(
    name="prostate_sib",
    channels=(
        "PTV70",
        "PTV56",
        "Prostate",
        "Rectum",
        "Bladder",
        "Femur_L",
        "Femur_R",
        "Bowel",
    ),
    targets={"PTV70": 70.0, "PTV56": 56.0},
    organs=("Rectum", "Bladder", "Femur_L", "Femur_R", "Bowel"),
    mirror_pairs=(("Femur_L", "Femur_R"),),
    fractions=28,
    extra={"auxiliary": ["SeminalVesicles"]},
)

OPENKBP_HN = StructureSet(
    name="openkbp_hn",
    channels=(
        "PTV70",
        "PTV63",
        "PTV56",
        "Brainstem",
        "SpinalCord",
        "RightParotid",
        "LeftParotid",
        "Esophagus",
        "Larynx",
        "Mandible",
    ),
    targets={"PTV70": 70.0, "PTV63": 63.0, "PTV56": 56.0},
    organs=(
        "Brainstem",
        "SpinalCord",
        "RightParotid",
        "LeftParotid",
        "Esophagus",
        "Larynx",
        "Mandible",
    ),
    mirror_pairs=(("LeftParotid", "RightParotid"),),
    fractions=35,
)

STRUCTURE_SETS: dict[str, StructureSet] = {s.name: s for s in (PROSTATE_SIB, OPENKBP_HN)}


def get_structure_set(name_or_path: str | Path | StructureSet | None = None) -> StructureSet:
    """Return a registered structure set by name, or load one from a JSON file.

    Args:
        name_or_path: a registered name (``"prostate_sib"``, ``"openkbp_hn"``), a path to a
            JSON file, a :class:`StructureSet` (returned as is) or None for the default.
    """
    if name_or_path is None:
        return PROSTATE_SIB
    if isinstance(name_or_path, StructureSet):
        return name_or_path
    key = str(name_or_path)
    if key in STRUCTURE_SETS:
        return STRUCTURE_SETS[key]
    path = Path(key)
    if path.suffix == ".json" and path.is_file():
        return StructureSet.from_dict(json.loads(path.read_text()))
    raise KeyError(f"unknown structure set {key!r}: use one of {sorted(STRUCTURE_SETS)} or a JSON file path")
