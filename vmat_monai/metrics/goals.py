"""Clinical goals: target coverage and hot spot plus the organ goals of the constraint vector.

For a structure set with targets (dose levels in Gy) the coverage goals are
``D95 >= 95 %`` of each target's dose (equivalently V95% >= 95 %) and, for the primary target,
the hot spot ``D2 <= 107 %``. Organ goals come from the case's constraint vector in the
structure set's layout (``vmat_monai.constraints.layout_for``): ``V_d <= limit`` in % of the
organ (cc for ``vx_cc``), ``Dmax <= limit`` evaluated as D0.03cc, ``Dmean <= limit``. Goals on
structures the case does not have, and entries of 0 (no goal), are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from vmat_monai.constraints import layout_for
from vmat_monai.metrics.dvh import dvh_statistics
from vmat_monai.structures import StructureSet

__all__ = ["GoalResult", "evaluate_goals", "goal_agreement"]

COVERAGE_FRACTION = 0.95
HOTSPOT_FRACTION = 1.07


@dataclass(frozen=True)
class GoalResult:
    """One goal on one dose: ``value`` (Gy, % or cc) compared with ``limit``."""

    goal: str
    structure: str
    statistic: str
    comparison: str  # ">=" or "<="
    limit: float
    value: float
    passed: bool

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def _check(goal: str, structure: str, stat: str, cmp: str, limit: float, value: float) -> GoalResult:
    ok = bool(np.isfinite(value) and (value >= limit - 1e-9 if cmp == ">=" else value <= limit + 1e-9))
    return GoalResult(goal, structure, stat, cmp, float(limit), float(value), ok)


def evaluate_goals(
    dose: np.ndarray,
    masks: Mapping[str, np.ndarray],
    structure_set: StructureSet,
    constraints_natural: Mapping[str, float],
    voxel_cc: float,
) -> list[GoalResult]:
    """Evaluate every applicable goal on ``dose`` (Gy).

    Args:
        dose: dose in Gy.
        masks: canonical structure name -> mask (or occupancy) on the dose grid.
        structure_set: gives the targets and their doses.
        constraints_natural: constraint key -> natural value (fraction, Gy or cc).
        voxel_cc: voxel volume, cm³.
    """
    out: list[GoalResult] = []
    d = np.asarray(dose)
    voxels: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # structure -> (dose, weight) of its voxels
    for name, m in masks.items():
        w = np.asarray(m, dtype=np.float64)
        sel = w > 0
        if sel.any():
            voxels[name] = (d[sel], w[sel])

    def stat(name: str, what: str) -> float:
        return dvh_statistics(*voxels[name], voxel_cc, (what,))[what]

    for target, level in structure_set.targets.items():
        if target not in voxels:
            continue
        st = dvh_statistics(*voxels[target], voxel_cc, ("D95", "D2"))
        lim = COVERAGE_FRACTION * level
        out.append(_check(f"{target} D95 >= {lim:.1f} Gy", target, "D95", ">=", lim, st["D95"]))
        if target == structure_set.primary_target:
            hot = HOTSPOT_FRACTION * level
            out.append(_check(f"{target} D2 <= {hot:.1f} Gy", target, "D2", "<=", hot, st["D2"]))
    for spec in layout_for(structure_set):
        if spec.kind == "target" or spec.key not in constraints_natural:
            continue
        limit = float(constraints_natural[spec.key])
        structures = [s for s in structure_set.organs if s == spec.structure or s.startswith(spec.structure + "_")]
        for s in structures:
            if s not in voxels:
                continue
            if limit <= 0:  # no goal (an absent organ's entry)
                continue
            if spec.kind == "dmax":
                v = stat(s, "D0.03cc")
                out.append(_check(f"{s} D0.03cc <= {limit:.1f} Gy", s, "D0.03cc", "<=", limit, v))
            elif spec.kind == "dmean":
                out.append(_check(f"{s} Dmean <= {limit:.1f} Gy", s, "Dmean", "<=", limit, stat(s, "Dmean")))
            elif spec.kind == "vx":
                name = f"V{spec.dose_gy:g}"
                out.append(_check(f"{s} {name}Gy <= {100 * limit:.1f} %", s, name, "<=", 100 * limit, stat(s, name)))
            else:
                name = f"V{spec.dose_gy:g}cc"
                out.append(_check(f"{s} V{spec.dose_gy:g}Gy <= {limit:.0f} cc", s, name, "<=", limit, stat(s, name)))
    return out


def goal_agreement(pred: list[GoalResult], plan: list[GoalResult]) -> float:
    """Fraction of goals where the prediction and the plan agree on pass/fail (NaN if none)."""
    ref = {g.goal: g.passed for g in plan}
    same = [g.passed == ref[g.goal] for g in pred if g.goal in ref]
    return float(np.mean(same)) if same else float("nan")
