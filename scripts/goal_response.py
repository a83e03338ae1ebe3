#!/usr/bin/env python3
"""How the synthetic planner's dose answers one organ's goals on one anatomy (docs/SYNTHETIC.md).

Plans one case of the synthetic cohort at several positions in the organ's tightness range (the
other goals as drawn) and prints, per plan, the goals' tightness, the organ's mean dose and the
body MAE against the loosest plan. About 25 s per plan with one thread.

    python scripts/goal_response.py --organ Femur --positions 0,0.25,0.5,0.75,1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vmat_monai.constraints import ConstraintVector
from vmat_monai.data.synthetic.cohort import CohortSettings, _draw_case
from vmat_monai.data.synthetic.dose_model import ArcModel, compute_plan_dose, hu_to_density
from vmat_monai.data.synthetic.goals import ORGAN_GOALS, goal_tightness, goals_at, strictness_of, tightness_positions

MASKS = {"Rectum": ("Rectum",), "Bladder": ("Bladder",), "Femur": ("Femur_L", "Femur_R"), "Bowel": ("Bowel",)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--organ", choices=list(ORGAN_GOALS), default="Femur")
    ap.add_argument("--positions", default="0,0.25,0.5,0.75,1", help="positions in the tightness range, 0-1")
    ap.add_argument("--case", type=int, default=1, help="case index of the cohort (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    args = ap.parse_args()
    settings = CohortSettings()
    drawn = _draw_case(args.case, args.seed, settings, None).goals
    positions = tightness_positions(drawn)
    reference = None
    print("position  tightness  goals  organ_mean_gy  body_mae_vs_first_gy  seconds")
    for p in (float(v) for v in args.positions.split(",")):
        strict = {o: strictness_of(o, p if o == args.organ else positions[o]) for o in ORGAN_GOALS}
        goals = {k: v for k, v in goals_at(strict).items() if k in ORGAN_GOALS[args.organ]}
        t0 = time.perf_counter()
        case = _draw_case(args.case, args.seed, settings, goals)
        result = compute_plan_dose(
            hu_to_density(case.hu_dose_grid),
            case.planned_masks,
            case.dgrid,
            ConstraintVector.from_goals(case.goals),
            np.random.default_rng([args.seed, args.case, 7]),
            ArcModel(n_angles=settings.n_angles),
        )
        masks = case.planned_masks
        dose = result.dose_gy * 70.0 / np.percentile(result.dose_gy[masks["PTV70"]], 5)  # PTV70 D95 = 70 Gy
        organ = np.zeros(dose.shape, bool)
        for name in MASKS[args.organ]:
            organ |= masks.get(name, np.zeros(dose.shape, bool))
        reference = dose if reference is None else reference
        mae = float(np.abs(dose - reference)[masks["BODY"]].mean())
        shown = ",".join(f"{k}={v:.3g}" for k, v in goals.items())
        tight = goal_tightness(case.goals)[args.organ]
        secs = time.perf_counter() - t0
        print(f"{p:8.2f}  {tight:9.3f}  {shown}  {dose[organ].mean():13.2f}  {mae:20.3f}  {secs:7.1f}")


if __name__ == "__main__":
    main()
