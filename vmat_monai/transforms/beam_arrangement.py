"""Beam arrangements: the gantry angles a plan delivers from, for the beam dose prior.

A :class:`BeamArrangement` is a list of beams, each a static field (one gantry angle) or an arc
(start and stop angle, rotation direction), with a relative weight (its share of the meterset).
Angles follow IEC 61217 as DICOM RTPLAN writes them: gantry 0° = the source above a supine
patient (beam entering anteriorly), 90° = source on the patient's left for head-first supine
(HFS). For feet-first supine (FFS) the patient's left and right swap, so a gantry angle ``g``
enters where ``-g`` would for HFS; prone positions are not supported (a clear error).

Where an arrangement comes from is recorded as ``source``: ``rtplan`` (read from the case's
RTPLAN by :func:`vmat_monai.dicom.plan_reading.read_beams`) or ``protocol:<name>`` (one of
:data:`PROTOCOLS`, used when a case has no usable RTPLAN). The arrangement travels in
``case.json`` and the datalist entry as :meth:`BeamArrangement.to_dict`.

Protocols:

- ``arc360``: one full coplanar arc (the synthetic cohort's plans and a generic VMAT plan).
- ``openkbp_9field``: nine equispaced coplanar static fields at 0°, 40°, …, 320°, the OpenKBP
  challenge's plans (Babier et al. 2021; confirmed from the dose distributions with
  ``scripts/openkbp_beam_angles.py``, docs/BEAM_PRIOR.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PROTOCOLS", "Beam", "BeamArrangement", "protocol"]

DIRECTIONS = ("CW", "CC", "NONE")
POSITIONS = ("HFS", "FFS")


@dataclass(frozen=True)
class Beam:
    """One field or arc.

    Args:
        start_deg: gantry angle where it starts (the only one for a static field), degrees IEC.
        stop_deg: gantry angle where an arc stops (equal to ``start_deg`` for a static field).
        direction: ``CW`` / ``CC`` (an arc, as DICOM GantryRotationDirection) or ``NONE`` (static).
        weight: relative meterset, > 0.
        couch_deg: couch (patient support) angle, degrees; non-zero = non-coplanar.
    """

    start_deg: float
    stop_deg: float
    direction: str = "NONE"
    weight: float = 1.0
    couch_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"beam direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not np.isfinite(self.weight) or self.weight <= 0:
            raise ValueError(f"beam weight must be positive, got {self.weight}")
        if not (np.isfinite(self.start_deg) and np.isfinite(self.stop_deg)):
            raise ValueError(f"beam angles must be finite, got {self.start_deg}, {self.stop_deg}")

    @property
    def is_arc(self) -> bool:
        return self.direction != "NONE"

    @property
    def coplanar(self) -> bool:
        """Couch angle 0 (within 0.001°, either side of 360)."""
        return abs(((self.couch_deg + 180.0) % 360.0) - 180.0) <= 1e-3

    def span_deg(self) -> float:
        """Degrees the arc sweeps (0 for a static field; a start equal to the stop is a full turn)."""
        if not self.is_arc:
            return 0.0
        d = (self.stop_deg - self.start_deg) if self.direction == "CW" else (self.start_deg - self.stop_deg)
        d %= 360.0
        return 360.0 if d == 0 else d

    def angles(self, step_deg: float) -> np.ndarray:
        """Gantry angles (degrees, in [0, 360)) this beam is computed at: the angle of a static
        field; a full turn every ``span / n`` degrees from its start; a partial arc at the centres
        of ``n`` equal sectors (``n`` = span / ``step_deg``, rounded)."""
        if not self.is_arc:
            return np.array([self.start_deg % 360.0])
        span = self.span_deg()
        n = max(1, round(span / step_deg))
        offsets = (np.arange(n) + (0.0 if span == 360.0 else 0.5)) * span / n
        sign = 1.0 if self.direction == "CW" else -1.0
        return (self.start_deg + sign * offsets) % 360.0


@dataclass(frozen=True)
class BeamArrangement:
    """The beams of a plan, where they came from, and the patient position."""

    beams: tuple[Beam, ...]
    source: str
    patient_position: str = "HFS"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.beams:
            raise ValueError("a beam arrangement needs at least one beam")
        if self.patient_position not in POSITIONS:
            raise ValueError(
                f"patient position {self.patient_position!r} is not supported by the beam prior (supported: "
                f"{POSITIONS}); use a protocol instead"
            )

    def weighted_angles(self, step_deg: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
        """(HFS-equivalent gantry angles in degrees, their weights summing to 1): an arc's weight
        is spread evenly over its samples (constant meterset per degree)."""
        angles, weights = [], []
        for b in self.beams:
            a = b.angles(step_deg)
            angles.append(a)
            weights.append(np.full(a.size, b.weight / a.size))
        ang, w = np.concatenate(angles), np.concatenate(weights)
        if self.patient_position == "FFS":
            ang = (-ang) % 360.0
        return ang, w / w.sum()

    @property
    def coplanar(self) -> bool:
        return all(b.coplanar for b in self.beams)

    def describe(self) -> str:
        """One line for QA reports, e.g. ``rtplan: 2 arcs (CW 181->179, CC 179->181)``."""
        parts = [
            f"{b.direction} {b.start_deg:g}->{b.stop_deg:g}" if b.is_arc else f"{b.start_deg:g}" for b in self.beams
        ]
        arcs = sum(b.is_arc for b in self.beams)
        kind = f"{arcs} arcs" if arcs == len(self.beams) else f"{len(self.beams) - arcs} static, {arcs} arcs"
        return f"{self.source}: {kind} ({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "patient_position": self.patient_position,
            "beams": [
                {
                    "start_deg": b.start_deg,
                    "stop_deg": b.stop_deg,
                    "direction": b.direction,
                    "weight": b.weight,
                    "couch_deg": b.couch_deg,
                }
                for b in self.beams
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BeamArrangement:
        """Inverse of :meth:`to_dict` (raises ValueError with the offending field)."""
        try:
            beams = tuple(
                Beam(**{k: (float(v) if k != "direction" else str(v)) for k, v in b.items()}) for b in d["beams"]
            )
            return cls(beams, str(d["source"]), str(d.get("patient_position", "HFS")), tuple(d.get("notes", ())))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a beam arrangement ({exc}): {dict(d)}") from None


def _static(angles: Sequence[float], name: str) -> BeamArrangement:
    return BeamArrangement(tuple(Beam(float(a), float(a)) for a in angles), f"protocol:{name}")


PROTOCOLS: dict[str, BeamArrangement] = {
    "arc360": BeamArrangement((Beam(180.0, 180.0, "CW"),), "protocol:arc360"),
    "openkbp_9field": _static(np.arange(9) * 40.0, "openkbp_9field"),
}


def protocol(name: str) -> BeamArrangement:
    """A named protocol from :data:`PROTOCOLS` (KeyError lists the names)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown beam protocol {name!r}; known: {sorted(PROTOCOLS)}") from None
