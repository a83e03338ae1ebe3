"""Real-world structure naming conventions drawn per synthetic case.

The generator deliberately uses the spellings seen in clinical exports (TG-263, legacy
department names, vendor defaults, mixed case and separators) so that structure matching is
exercised on every cohort. The converter must recover the canonical names from these through
``oar_mapping.json``; nothing here is read by the matcher.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HELPER_NAMES", "NAME_VARIANTS", "draw_names"]

NAME_VARIANTS: dict[str, list[str]] = {
    "BODY": ["BODY", "External", "Body", "EXTERNAL", "Outer Contour", "Skin", "BODY_Contour"],
    "PTV70": ["PTV70", "PTV_70", "PTV 70Gy", "PTV_7000", "ptv70", "PTV70_2-27", "PTV_High", "PTV_70Gy", "PTVp_70"],
    "PTV56": ["PTV56", "PTV_56", "PTV 56Gy", "PTV_5600", "ptv56", "PTV_Low", "PTV_56Gy", "PTVsv_56", "PTV56_SV"],
    "Prostate": ["Prostate", "PROSTATE", "prostate", "PROS", "Prostate_Gland", "Prost"],
    "SeminalVesicles": ["SeminalVes", "Seminal Vesicles", "SV", "SVs", "Sem_Ves", "SeminalVesicle"],
    "Rectum": ["Rectum", "RECTUM", "rectum", "Rectum_O", "Rect", "Bowel_Large_Rectum", "Rectum_Wall_Outer"],
    "Bladder": ["Bladder", "BLADDER", "bladder", "Urinary Bladder", "Blad", "Bladder_O", "UrinaryBladder"],
    "Femur_L": [
        "Femur_Head_L",
        "Femoral Head Lt",
        "FemoralHead_L",
        "L Femoral Head",
        "Lt Fem Head",
        "femur_l",
        "LFH",
        "Femur_L",
        "Fem_Head_Left",
        "FEMORAL_HEAD_L",
    ],
    "Femur_R": [
        "Femur_Head_R",
        "Femoral Head Rt",
        "FemoralHead_R",
        "R Femoral Head",
        "Rt Fem Head",
        "femur_r",
        "RFH",
        "Femur_R",
        "Fem_Head_Right",
        "FEMORAL_HEAD_R",
    ],
    "Bowel": ["Bowel", "Bowel_Bag", "BowelBag", "Bowel_Small", "SmallBowel", "Small Bowel", "BOWEL", "Bowel Bag"],
}
"""Canonical (generator) name -> spellings seen in the wild. Paired entries share an index."""

HELPER_NAMES: dict[str, list[str]] = {
    "ring70": ["Ring_PTV70", "z_ring", "RING 2cm", "zRing70", "ring_20mm"],
    "ptv56_minus_70": ["z_PTV56-PTV70", "PTV56-PTV70", "zPTV56_eval", "PTV56-70"],
    "opt_rectum": ["opt_Rectum", "optRectum", "Rectum-PTV", "avoid_Rectum", "Rectum_opt", "zRectum_avoid"],
    "opt_bladder": ["opt_Bladder", "optBladder", "Bladder-PTV", "avoid_Bladder", "zBladder_avoid"],
    "rectum_minus_ptv": ["Rectum_PRV05", "Rectum-PTV56", "Resd_Rectum", "zRectum-PTV"],
    "hotspot": ["SplResdMax", "Resd_70", "z_hot", "opt_Dmax", "zHotSpot"],
}
"""Optimisation helper structures: must never be matched to an organ."""


def draw_names(rng: np.random.Generator, present: list[str], n_helpers: int) -> tuple[dict[str, str], dict[str, str]]:
    """Pick one real-world name per present structure and ``n_helpers`` helper names.

    Left/right pairs use the same convention (same index) as a real department would.

    Returns:
        (canonical -> written name, helper kind -> written name)
    """
    names: dict[str, str] = {}
    pair_idx = int(rng.integers(len(NAME_VARIANTS["Femur_L"])))
    for canon in present:
        variants = NAME_VARIANTS[canon]
        if canon in ("Femur_L", "Femur_R"):
            names[canon] = variants[pair_idx]
        else:
            names[canon] = variants[int(rng.integers(len(variants)))]
    kinds = list(HELPER_NAMES)
    chosen = rng.choice(len(kinds), size=min(n_helpers, len(kinds)), replace=False)
    helpers = {}
    for i in sorted(int(c) for c in chosen):
        opts = HELPER_NAMES[kinds[i]]
        helpers[kinds[i]] = opts[int(rng.integers(len(opts)))]
    return names, helpers
