"""Structure sets: the canonical channel order, targets, organs and left/right pairs.

A structure set is data, not code. The prostate SIB set is the default; other sites (the
OpenKBP head-and-neck set) are chosen by name or loaded from a JSON file with the same keys as
:meth:`StructureSet.to_dict`. No other module hard-codes a channel index or a channel count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OPENKBP_HN",
    "PROSTATE_SIB",
    "STRUCTURE_SETS",
    "NameMatcher",
    "StructureMatch",
    "StructureSet",
    "get_structure_set",
    "normalise_name",
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
        typical_volume_cc: structure -> (low, high) volume, cm³, of the broad range its kind has;
            outside it the QA report warns (vmat_monai.data.plan_plausibility).
    """

    name: str
    channels: tuple[str, ...]
    targets: Mapping[str, float]
    organs: tuple[str, ...]
    mirror_pairs: tuple[tuple[str, str], ...] = ()
    fractions: int = 1
    body: str = "BODY"
    extra: Mapping[str, Any] = field(default_factory=dict)
    typical_volume_cc: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"structure set {self.name!r}: duplicate channel names")
        unknown = [s for s in (*self.targets, *self.organs) if s not in self.channels]
        for pair in self.mirror_pairs:
            unknown += [s for s in pair if s not in self.channels]
        unknown += [s for s in self.typical_volume_cc if s not in self.channels]
        bad = {s: r for s, r in self.typical_volume_cc.items() if not 0 <= r[0] < r[1]}
        if bad:
            raise ValueError(f"structure set {self.name!r}: typical_volume_cc needs 0 <= low < high, got {bad}")
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
            "typical_volume_cc": {k: list(v) for k, v in self.typical_volume_cc.items()},
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
            typical_volume_cc={str(k): (float(v[0]), float(v[1])) for k, v in d.get("typical_volume_cc", {}).items()},
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
    # broad ranges (cm³) of adult pelvic anatomy and prostate/seminal-vesicle/node targets: a warning
    # outside them flags a gross contouring or naming error, not an unusual patient
    typical_volume_cc={
        "PTV70": (20, 500),
        "PTV56": (40, 2500),
        "Prostate": (10, 200),
        "Rectum": (15, 300),
        "Bladder": (30, 1200),
        "Femur_L": (20, 600),
        "Femur_R": (20, 600),
        "Bowel": (10, 6000),
    },
)

_HN_ORGANS = ("Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus", "Larynx", "Mandible")

OPENKBP_HN = StructureSet(
    name="openkbp_hn",
    channels=("PTV70", "PTV63", "PTV56", *_HN_ORGANS),
    targets={"PTV70": 70.0, "PTV63": 63.0, "PTV56": 56.0},
    organs=_HN_ORGANS,
    mirror_pairs=(("LeftParotid", "RightParotid"),),
    fractions=35,
    # about half the 1st and twice the 99th percentile of the 202 OpenKBP patients (docs/CONVERSION.md)
    typical_volume_cc={
        "PTV70": (10, 2000),
        "PTV63": (1.5, 2000),
        "PTV56": (2.5, 3000),
        "Brainstem": (3, 90),
        "SpinalCord": (4, 120),
        "RightParotid": (4, 110),
        "LeftParotid": (4, 110),
        "Esophagus": (1.4, 70),
        "Larynx": (0.5, 140),
        "Mandible": (15, 200),
    },
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


# ---------------------------------------------------------------------------------------------
# Structure-name matching (oar_mapping.json)
# ---------------------------------------------------------------------------------------------

MATCH_EXACT, MATCH_VARIANT, MATCH_PATTERN = 0, 1, 2
_LEVEL_NAMES = {MATCH_EXACT: "exact", MATCH_VARIANT: "variant", MATCH_PATTERN: "pattern"}


def default_mapping_path() -> Path:
    """``oar_mapping.json`` at the repository root (or next to the installed package)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "oar_mapping.json", here / "oar_mapping.json"):
        if cand.is_file():
            return cand
    raise FileNotFoundError("oar_mapping.json not found next to the package; pass --mapping")


def normalise_name(name: str) -> str:
    """Lower case; spaces, dashes, dots and slashes become ``_``; repeated ``_`` collapse."""
    s = name.strip().lower()
    s = re.sub(r"[\s\-./\\]+", "_", s)
    return re.sub(r"_+", "_", s)


@dataclass(frozen=True)
class NameMatch:
    """How one ROI name was matched."""

    roi_name: str
    canonical: str | None
    level: str  # "exact", "variant", "pattern", "helper" or "unmatched"


@dataclass
class StructureMatch:
    """Result of matching a case's ROI names to a structure set."""

    found: dict[str, str]  # canonical -> chosen ROI name
    missing: list[str]
    unmatched: list[str]
    helpers: list[str]
    duplicates: dict[str, list[str]]  # canonical -> all candidate ROI names (chosen first)
    details: list[NameMatch]

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "missing": self.missing,
            "unmatched": self.unmatched,
            "helpers": self.helpers,
            "duplicates": self.duplicates,
        }


class NameMatcher:
    """Matches ROI names to canonical structures with ``oar_mapping.json``.

    Rule (documented in docs/STRUCTURES.md): a name matching a helper pattern is a helper and
    nothing else. Otherwise it is compared with every structure's exact names (case-sensitive
    first, then normalised), then its normalised variants, then its patterns; the first level
    that matches wins, and within a level the first structure in file order. When several ROIs
    match one canonical structure, the best level wins, then the shorter normalised name, then
    the lower ROI number (earlier in the file); the others are reported as duplicates.
    """

    def __init__(self, mapping: str | Path | Mapping[str, Any] | None = None) -> None:
        if mapping is None or isinstance(mapping, (str, Path)):
            path = Path(mapping) if mapping is not None else default_mapping_path()
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"cannot read structure mapping {path}: {exc}") from None
        else:
            data = dict(mapping)
        self.helper_res = [re.compile(p) for p in data.get("helper_patterns", [])]
        self.structures: dict[str, dict[str, Any]] = {}
        for canon, spec in data["structures"].items():
            self.structures[canon] = {
                "exact": set(spec.get("exact", [])),
                "exact_norm": {normalise_name(n) for n in spec.get("exact", [])},
                "variants": {normalise_name(n) for n in spec.get("variants", [])},
                "patterns": [re.compile(p) for p in spec.get("patterns", [])],
            }

    def is_helper(self, name: str) -> bool:
        n = normalise_name(name)
        return any(r.search(n) for r in self.helper_res)

    def classify(self, name: str) -> tuple[str | None, int | None]:
        """(canonical, level) of one name; (None, None) for helpers and unmatched names."""
        if self.is_helper(name):
            return None, None
        n = normalise_name(name)
        for level in (MATCH_EXACT, MATCH_VARIANT, MATCH_PATTERN):
            for canon, spec in self.structures.items():
                if level == MATCH_EXACT and (name in spec["exact"] or n in spec["exact_norm"]):
                    return canon, level
                if level == MATCH_VARIANT and n in spec["variants"]:
                    return canon, level
                if level == MATCH_PATTERN and any(r.search(n) for r in spec["patterns"]):
                    return canon, level
        return None, None

    def match(self, roi_names: list[str], structure_set: StructureSet, extra: tuple[str, ...] = ()) -> StructureMatch:
        """Match a case's ROI names (in file order) to ``structure_set`` channels plus ``extra``."""
        wanted = (*structure_set.channels, *extra)
        candidates: dict[str, list[tuple[int, int, int, str]]] = {}
        details, unmatched, helpers = [], [], []
        for order, name in enumerate(roi_names):
            if self.is_helper(name):
                helpers.append(name)
                details.append(NameMatch(name, None, "helper"))
                continue
            canon, level = self.classify(name)
            if canon is None:
                unmatched.append(name)
                details.append(NameMatch(name, None, "unmatched"))
                continue
            if canon not in wanted:  # a known structure this set does not use (e.g. seminal vesicles)
                details.append(NameMatch(name, canon, "not in set"))
                continue
            details.append(NameMatch(name, canon, _LEVEL_NAMES[int(level)]))  # type: ignore[arg-type]
            candidates.setdefault(canon, []).append((int(level), len(normalise_name(name)), order, name))  # type: ignore[arg-type]
        found, duplicates = {}, {}
        for canon, cands in candidates.items():
            cands.sort()
            found[canon] = cands[0][3]
            if len(cands) > 1:
                duplicates[canon] = [c[3] for c in cands]
        missing = [c for c in wanted if c not in found]
        return StructureMatch(found, missing, unmatched, helpers, duplicates, details)
