"""The synthetic planner's clinical goals: how tight each goal set is, and how a cohort draws them.

The planner (:mod:`vmat_monai.data.synthetic.dose_model`) pushes an organ's dose down with a
weight that grows with the square of the organ's *tightness* — the protocol's default goal over
the case's goal, averaged over the organ's goals. Measured on one anatomy (docs/SYNTHETIC.md),
the organ's mean dose falls about linearly with the tightness (rectum: 3.5, 2.9, 2.9, 3.3 Gy per
unit over four equal steps of strictness), not with the goal value: half of a uniform range of
femoral-head V50 goals (0.10–0.15) moved the femoral-head mean dose by 0.8 Gy, the other half
(0.05–0.10) by 2.8 Gy. A cohort therefore draws each organ's *position in its tightness range*
uniformly, so that every part of the planner's response is covered by as many plans.
"""

from __future__ import annotations

import numpy as np

from vmat_monai.constraints import ConstraintVector

__all__ = [
    "GOAL_SAMPLING_VERSION",
    "ORGAN_GOALS",
    "goal_tightness",
    "goals_at",
    "sample_goals",
    "strictness_of",
    "tightness_positions",
]

GOAL_SAMPLING_VERSION = 2
"""Bumped when a cohort seed draws other goals (2: uniform in tightness, was uniform in the goal)."""

_LOOSE_TIGHT: dict[str, dict[str, tuple[float, float]]] = {
    "Rectum": {
        "rectum_V50": (0.60, 0.35),
        "rectum_V60": (0.42, 0.22),
        "rectum_V70": (0.25, 0.12),
        "rectum_Dmax": (76.0, 73.0),
    },
    "Bladder": {"bladder_V65": (0.55, 0.35), "bladder_V70": (0.40, 0.25), "bladder_V75": (0.30, 0.18)},
    "Femur": {"femur_V50": (0.15, 0.05)},
    "Bowel": {"bowel_V45cc": (250.0, 120.0)},
}
ORGAN_GOALS: dict[str, tuple[str, ...]] = {organ: tuple(goals) for organ, goals in _LOOSE_TIGHT.items()}
"""The goals (natural units) that move together with each organ's strictness."""

_DECIMALS = {"rectum_Dmax": 2, "bowel_V45cc": 1}

_TIGHTNESS_GOALS = {
    "Rectum": ("rectum_V50", "rectum_V60", "rectum_V70"),
    "Bladder": ("bladder_V65", "bladder_V70", "bladder_V75"),
    "Femur": ("femur_V50",),
    "Bowel": ("bowel_V45cc",),
}
"""The volume goals whose tightness drives the planner's push on each organ (not Dmax)."""
_PROTOCOL = ConstraintVector.defaults().as_goals()


def goal_tightness(goals: dict[str, float]) -> dict[str, float]:
    """Each organ's tightness: the mean over its volume goals of the protocol's goal (the constraint
    vector's default) over the case's goal; dimensionless, 1 at the protocol, larger = stricter."""
    return {
        organ: float(np.mean([_PROTOCOL[k] / max(goals[k], 1.0 if k.endswith("cc") else 1e-3) for k in keys]))
        for organ, keys in _TIGHTNESS_GOALS.items()
    }


def goals_at(strictness: dict[str, float]) -> dict[str, float]:
    """The goals (natural units) of each organ at a strictness in [0, 1] (0 loosest, 1 tightest),
    moving every goal of the organ linearly between its loose and tight end; not rounded."""
    out: dict[str, float] = {}
    for organ, goals in _LOOSE_TIGHT.items():
        s = float(np.clip(strictness[organ], 0.0, 1.0))
        out.update({k: loose + (tight - loose) * s for k, (loose, tight) in goals.items()})
    return out


_GRID = np.linspace(0.0, 1.0, 1001)


def _tightness_curve(organ: str) -> np.ndarray:
    goals = [goals_at(dict.fromkeys(_LOOSE_TIGHT, float(s))) for s in _GRID]
    return np.array([goal_tightness(g)[organ] for g in goals])


_CURVES = {organ: _tightness_curve(organ) for organ in _LOOSE_TIGHT}


def strictness_of(organ: str, position: float) -> float:
    """The strictness whose tightness lies at ``position`` (0–1) of the organ's tightness range."""
    curve = _CURVES[organ]
    target = curve[0] + float(np.clip(position, 0.0, 1.0)) * (curve[-1] - curve[0])
    return float(np.interp(target, curve, _GRID))


def sample_goals(rng: np.random.Generator, positions: dict[str, float] | None = None) -> dict[str, float]:
    """One case's goals (natural units): each organ's position in its tightness range uniform in
    [0, 1] (four draws from ``rng``, in the order of :data:`ORGAN_GOALS`), or the given ``positions``
    (organs not given are drawn). A position moves all of the organ's goals together, so the planner
    sees consistent tight or loose goal sets."""
    drawn = {organ: float(v) for organ, v in zip(_LOOSE_TIGHT, rng.uniform(0.0, 1.0, size=4), strict=True)}
    drawn.update(positions or {})
    goals = goals_at({organ: strictness_of(organ, p) for organ, p in drawn.items()})
    return {k: round(v, _DECIMALS.get(k, 3)) for k, v in goals.items()}


def tightness_positions(goals: dict[str, float]) -> dict[str, float]:
    """Where each organ's goals lie in its tightness range (0 loosest, 1 tightest)."""
    t = goal_tightness(goals)
    return {organ: float((t[organ] - c[0]) / (c[-1] - c[0])) for organ, c in _CURVES.items()}
