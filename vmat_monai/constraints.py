"""The constraint vector: layouts, defaults, units and the source of each value.

The prostate layout (13 values) is that of the original research code, kept for compatibility;
other structure sets have their own (``LAYOUTS``, ``layout_for``). Every entry has a
key (used on the command line: ``rectum_V70=0.10``), a natural value in clinical units
(Gy, volume fraction or cc) and a vector value = natural / scale, where the scale is the
primary prescription (70 Gy) for doses, 500 cc for the bowel volume and 1 for fractions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LAYOUTS",
    "OPENKBP_LAYOUT",
    "PROSTATE_LAYOUT",
    "RX_GY",
    "SOURCE_DEFAULT",
    "SOURCE_OVERRIDE",
    "SOURCE_PLAN",
    "ConstraintSpec",
    "ConstraintVector",
    "goals_to_constraints",
    "layout_for",
    "mirror_constraint_pairs",
    "override_vector",
    "parse_overrides",
]

RX_GY = 70.0
"""Primary prescription used to scale doses in the vector, Gy."""
BOWEL_CC_SCALE = 500.0
SOURCE_DEFAULT = "protocol_default"
SOURCE_PLAN = "plan"
SOURCE_OVERRIDE = "user_override"


@dataclass(frozen=True)
class ConstraintSpec:
    """One entry of the constraint vector.

    Args:
        index: position in the vector.
        key: name used in files and on the command line.
        kind: ``"target"`` (prescribed dose if present, else 0), ``"vx"`` (max volume fraction
            receiving ``dose_gy``), ``"vx_cc"`` (max volume in cc receiving ``dose_gy``),
            ``"dmax"`` (max dose in Gy, evaluated as D0.03cc) or ``"dmean"`` (max mean dose, Gy).
        structure: canonical structure the goal applies to (``"Femur"`` means both heads).
        dose_gy: dose level of a ``vx``/``vx_cc`` goal, or the prescription of a target, Gy.
        default_natural: protocol default in natural units (Gy, fraction or cc).
        unit: natural unit: ``"Gy"``, ``"fraction"`` or ``"cc"``.
    """

    index: int
    key: str
    kind: str
    structure: str
    dose_gy: float | None
    default_natural: float
    unit: str

    @property
    def scale(self) -> float:
        """Divide the natural value by this to get the vector value."""
        if self.unit == "Gy":
            return RX_GY
        if self.unit == "cc":
            return BOWEL_CC_SCALE
        return 1.0

    @property
    def default(self) -> float:
        """Protocol default as a vector value."""
        return self.default_natural / self.scale

    def describe(self) -> str:
        """Human-readable goal, e.g. ``Rectum V50Gy <= 50 %``."""
        if self.kind == "target":
            return f"{self.structure} present: {self.dose_gy:g} Gy / Rx"
        if self.kind == "dmax":
            return f"{self.structure} Dmax <= {self.default_natural:g} Gy"
        if self.kind == "dmean":
            return f"{self.structure} Dmean <= {self.default_natural:g} Gy"
        if self.kind == "vx_cc":
            return f"{self.structure} V{self.dose_gy:g}Gy <= {self.default_natural:g} cc"
        return f"{self.structure} V{self.dose_gy:g}Gy <= {100 * self.default_natural:g} %"


PROSTATE_LAYOUT: tuple[ConstraintSpec, ...] = (
    ConstraintSpec(0, "ptv70", "target", "PTV70", 70.0, 70.0, "Gy"),
    ConstraintSpec(1, "ptv56", "target", "PTV56", 56.0, 56.0, "Gy"),
    ConstraintSpec(2, "ptv50_4", "target", "PTV50.4", 50.4, 0.0, "Gy"),
    ConstraintSpec(3, "rectum_V50", "vx", "Rectum", 50.0, 0.50, "fraction"),
    ConstraintSpec(4, "rectum_V60", "vx", "Rectum", 60.0, 0.35, "fraction"),
    ConstraintSpec(5, "rectum_V70", "vx", "Rectum", 70.0, 0.20, "fraction"),
    ConstraintSpec(6, "rectum_Dmax", "dmax", "Rectum", None, 75.0, "Gy"),
    ConstraintSpec(7, "bladder_V65", "vx", "Bladder", 65.0, 0.50, "fraction"),
    ConstraintSpec(8, "bladder_V70", "vx", "Bladder", 70.0, 0.35, "fraction"),
    ConstraintSpec(9, "bladder_V75", "vx", "Bladder", 75.0, 0.25, "fraction"),
    ConstraintSpec(10, "femur_V50", "vx", "Femur", 50.0, 0.10, "fraction"),
    ConstraintSpec(11, "bowel_V45cc", "vx_cc", "Bowel", 45.0, 195.0, "cc"),
    ConstraintSpec(12, "cord_Dmax", "dmax", "SpinalCord", None, 45.0, "Gy"),
)

OPENKBP_LAYOUT: tuple[ConstraintSpec, ...] = (
    ConstraintSpec(0, "ptv70", "target", "PTV70", 70.0, 70.0, "Gy"),
    ConstraintSpec(1, "ptv63", "target", "PTV63", 63.0, 63.0, "Gy"),
    ConstraintSpec(2, "ptv56", "target", "PTV56", 56.0, 56.0, "Gy"),
    ConstraintSpec(3, "brainstem_Dmax", "dmax", "Brainstem", None, 54.0, "Gy"),
    ConstraintSpec(4, "cord_Dmax", "dmax", "SpinalCord", None, 45.0, "Gy"),
    ConstraintSpec(5, "parotid_R_Dmean", "dmean", "RightParotid", None, 26.0, "Gy"),
    ConstraintSpec(6, "parotid_L_Dmean", "dmean", "LeftParotid", None, 26.0, "Gy"),
    ConstraintSpec(7, "esophagus_Dmean", "dmean", "Esophagus", None, 34.0, "Gy"),
    ConstraintSpec(8, "larynx_Dmean", "dmean", "Larynx", None, 44.0, "Gy"),
    ConstraintSpec(9, "mandible_Dmax", "dmax", "Mandible", None, 70.0, "Gy"),
)
"""Head-and-neck (OpenKBP) layout: target presence and one protocol goal per organ; per-case
values come from :func:`vmat_monai.data.openkbp.openkbp_constraints` (documented rule)."""

LAYOUTS: dict[str, tuple[ConstraintSpec, ...]] = {"prostate_sib": PROSTATE_LAYOUT, "openkbp_hn": OPENKBP_LAYOUT}


def layout_for(structure_set: str | Any) -> tuple[ConstraintSpec, ...]:
    """The constraint layout of a structure set (by name, or a StructureSet whose ``extra`` names one)."""
    name = (
        structure_set
        if isinstance(structure_set, str)
        else structure_set.extra.get("constraint_layout", structure_set.name)
    )
    if name not in LAYOUTS:
        raise KeyError(f"no constraint layout for {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def mirror_constraint_pairs(structure_set: Any) -> list[tuple[int, int]]:
    """Index pairs of the constraint vector that a left-right flip swaps.

    A flip swaps the channels of every mirror pair of the structure set (``Femur_L``/``Femur_R``,
    ``LeftParotid``/``RightParotid``); a goal tied to one side (``parotid_L_Dmean``) must then
    trade places with its partner of the same kind and dose level, or the network would be told
    the left organ's goal for the right one. Goals on both sides at once (``femur_V50``) stay.
    """
    layout = layout_for(structure_set)
    pairs: list[tuple[int, int]] = []
    for left, right in structure_set.mirror_pairs:
        for a in layout:
            if a.structure != left:
                continue
            for b in layout:
                if b.structure == right and (b.kind, b.dose_gy) == (a.kind, a.dose_gy):
                    pairs.append((a.index, b.index))
    return pairs


def goals_to_constraints(
    goals: Sequence[Mapping[str, Any]], layout: Sequence[ConstraintSpec], mirror_pairs: Sequence[Sequence[str]] = ()
) -> dict[str, float]:
    """Map a plan's goals onto the keys of ``layout`` (natural units); goals it does not hold are ignored.

    Each goal is a mapping with ``structure`` (canonical name), ``kind`` (``vx``, ``vx_cc``,
    ``dmax``, ``dmean``), ``dose_gy`` and ``limit``. A layout entry on both organs of a mirror pair
    (``Femur`` for ``Femur_L``/``Femur_R``: the entry's structure is the pair's common prefix) takes
    the goals of either side, keeping the stricter limit.
    """
    both_sides = {
        name: s.structure
        for pair in mirror_pairs
        for name in pair
        for s in layout
        if s.structure not in pair and all(str(n).startswith(s.structure) for n in pair)
    }
    out: dict[str, float] = {}
    for g in goals:
        structure = both_sides.get(str(g["structure"]), str(g["structure"]))
        for s in layout:
            if s.structure != structure or s.kind != g["kind"]:
                continue
            if s.kind in ("dmax", "dmean"):
                out[s.key] = float(g["dose_gy"])
            elif s.dose_gy is not None and abs(s.dose_gy - float(g["dose_gy"])) < 1e-6:
                out[s.key] = min(out.get(s.key, np.inf), float(g["limit"]))
    return out


def spec(key: str, layout: Sequence[ConstraintSpec] = PROSTATE_LAYOUT) -> ConstraintSpec:
    """Look up an entry of ``layout`` by key (case-insensitive)."""
    for s in layout:
        if s.key.lower() == key.lower():
            return s
    raise KeyError(f"unknown constraint {key!r}; known keys: {', '.join(s.key for s in layout)}")


@dataclass
class ConstraintVector:
    """A constraint vector with the source of each value.

    Args:
        natural: natural values (Gy, fraction, cc) in layout order.
        sources: where each value came from (``plan``, ``protocol_default``, ``user_override``).
        layout: the entries (default: the prostate layout).
    """

    natural: np.ndarray
    sources: list[str]
    layout: tuple[ConstraintSpec, ...] = PROSTATE_LAYOUT

    def __post_init__(self) -> None:
        self.natural = np.asarray(self.natural, dtype=np.float64).reshape(-1)
        n = len(self.layout)
        if self.natural.shape != (n,) or len(self.sources) != n:
            raise ValueError(f"a constraint vector of this layout has {n} values")
        if not np.all(np.isfinite(self.natural)) or np.any(self.natural < 0):
            raise ValueError(f"constraint values must be finite and >= 0: {self.natural}")

    @classmethod
    def defaults(cls, layout: tuple[ConstraintSpec, ...] = PROSTATE_LAYOUT) -> ConstraintVector:
        """The protocol defaults."""
        return cls(np.array([s.default_natural for s in layout]), [SOURCE_DEFAULT] * len(layout), layout)

    @classmethod
    def from_goals(
        cls,
        goals: Mapping[str, float],
        source: str = SOURCE_PLAN,
        layout: tuple[ConstraintSpec, ...] = PROSTATE_LAYOUT,
    ) -> ConstraintVector:
        """Defaults overridden by ``goals`` (key -> natural value), each marked with ``source``."""
        return cls.defaults(layout).with_values(goals, source)

    def with_values(self, values: Mapping[str, float], source: str = SOURCE_OVERRIDE) -> ConstraintVector:
        """A copy with some entries replaced (key -> natural value)."""
        natural, sources = self.natural.copy(), list(self.sources)
        for key, value in values.items():
            s = spec(key, self.layout)
            natural[s.index] = float(value)
            sources[s.index] = source
        return ConstraintVector(natural, sources, self.layout)

    @property
    def vector(self) -> np.ndarray:
        """The network values (natural / scale), float32."""
        scales = np.array([s.scale for s in self.layout])
        return (self.natural / scales).astype(np.float32)

    def as_goals(self) -> dict[str, float]:
        """Key -> natural value."""
        return {s.key: float(self.natural[s.index]) for s in self.layout}

    def to_dict(self) -> dict[str, Any]:
        """JSON form: layout name, vector, natural values with units, and sources."""
        name = next((k for k, v in LAYOUTS.items() if v == self.layout), "custom")
        return {
            "layout": name,
            "vector": [float(v) for v in self.vector],
            "entries": [
                {
                    "index": s.index,
                    "key": s.key,
                    "natural": float(self.natural[s.index]),
                    "unit": s.unit,
                    "source": self.sources[s.index],
                }
                for s in self.layout
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConstraintVector:
        """Inverse of :meth:`to_dict` (files without a layout name hold the prostate layout)."""
        layout = LAYOUTS[d.get("layout", "prostate_sib")]
        entries: Sequence[Mapping[str, Any]] = d["entries"]
        natural = np.zeros(len(layout))
        sources = [SOURCE_DEFAULT] * len(layout)
        for e in entries:
            s = spec(e["key"], layout)
            natural[s.index] = float(e["natural"])
            sources[s.index] = str(e["source"])
        return cls(natural, sources, layout)


def parse_overrides(
    items: Sequence[str], layout: Sequence[ConstraintSpec] | None = PROSTATE_LAYOUT
) -> dict[str, float]:
    """``["rectum_V70=0.10", "bowel_V45cc=150"]`` -> ``{"rectum_V70": 0.1, ...}`` (natural units).

    Keys are checked against ``layout`` (and written as its keys); ``layout=None`` leaves them to
    the consumer (the predictor checks them against its structure set's layout).
    """
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"constraint {item!r}: use KEY=VALUE, e.g. rectum_V70=0.10")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"constraint {item!r}: {value!r} is not a number") from None
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"constraint {item!r}: the value must be finite and >= 0")
        key = key.strip()
        out[spec(key, layout).key if layout is not None else key] = v
    return out


def override_vector(
    vector: Sequence[float], overrides: Mapping[str, float], layout: Sequence[ConstraintSpec] = PROSTATE_LAYOUT
) -> list[float]:
    """A network-scaled constraint vector with some entries replaced by natural values (Gy, fraction, cc)."""
    v = [float(x) for x in vector]
    if len(v) != len(layout):
        raise ValueError(f"a constraint vector of this layout has {len(layout)} values (got {len(v)})")
    for key, natural in overrides.items():
        s = spec(key, layout)
        v[s.index] = float(natural) / s.scale
    return v
