"""Randomised male pelvis phantom: analytic shapes rasterised on any grid.

The phantom is defined in patient coordinates (LPS, mm), so the same anatomy can be drawn on
the CT grid (for images and contours) and on the coarser dose grid (for the dose model).
Shapes: body outline with subcutaneous fat, pelvic bones (femoral heads and necks,
acetabula, pubic rami, ischia, sacrum, iliac wings), prostate, seminal vesicles, bladder with
variable filling, rectum with a curved centre line and occasional gas, bowel bag with gas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vmat_monai.geometry import Grid, expand_mask

__all__ = ["PelvisParams", "Phantom", "rasterise", "sample_pelvis"]

HU = {
    "air": -1000.0,
    "fat": -95.0,
    "soft": 40.0,
    "prostate": 45.0,
    "urine": 8.0,
    "rectum_wall": 35.0,
    "stool": 15.0,
    "gas": -880.0,
    "bowel": 28.0,
    "marrow": 260.0,
    "cortical": 950.0,
}


@dataclass
class PelvisParams:
    """Anatomy parameters of one synthetic patient (mm, cc; LPS coordinates).

    Every field is drawn by :func:`sample_pelvis`; the dataclass is what the sidecar JSON keeps.
    """

    body_semi: tuple[float, float]
    body_centre_y: float
    fat_thickness: float
    prostate_centre: tuple[float, float, float]
    prostate_semi: tuple[float, float, float]
    sv_offset_x: float
    sv_semi: tuple[float, float, float]
    rectum_radius: float
    rectum_x_phase: float
    rectum_curvature: float
    rectum_top: float
    rectum_gas: bool
    bladder_volume_cc: float
    bladder_offset: tuple[float, float]
    bladder_wobble: tuple[float, float]
    femur_x: float
    femur_dy: float
    femur_dz: float
    femur_radius: float
    gas_seed: int
    ptv70_margin_mm: float = 7.0
    ptv56_margin_mm: float = 8.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_pelvis(rng: np.random.Generator) -> PelvisParams:
    """Draw one patient's anatomy."""
    u = rng.uniform
    body_semi = (u(165, 200), u(110, 135))
    body_cy = u(-10, 10)
    p_semi = (u(20, 27), u(15, 21), u(17, 24))
    p_c = (u(-4, 4), body_cy + u(15, 32), u(-10, 10))
    return PelvisParams(
        body_semi=body_semi,
        body_centre_y=body_cy,
        fat_thickness=u(10, 32),
        prostate_centre=p_c,
        prostate_semi=p_semi,
        sv_offset_x=u(12, 18),
        sv_semi=(u(12, 17), u(5, 7), u(7, 10)),
        rectum_radius=u(12, 17),
        rectum_x_phase=u(0, 2 * np.pi),
        rectum_curvature=u(0.002, 0.006),
        rectum_top=u(50, 65),
        rectum_gas=bool(rng.random() < 0.35),
        bladder_volume_cc=u(80, 450),
        bladder_offset=(u(-6, 6), u(-16, -4)),
        bladder_wobble=(u(0.0, 0.09), u(0, 2 * np.pi)),
        femur_x=u(85, 100),
        femur_dy=u(-10, 5),
        femur_dz=u(-5, 15),
        femur_radius=u(22, 26),
        gas_seed=int(rng.integers(2**31)),
    )


class Phantom:
    """Analytic pelvis built from :class:`PelvisParams`."""

    def __init__(self, params: PelvisParams) -> None:
        self.p = params
        px, py, pz = params.prostate_centre
        _, b, c = params.prostate_semi
        self.prostate_c = np.array([px, py, pz])
        # bladder: ellipsoid of the requested volume, LR:AP:SI = 1.25:1:0.95
        k = (3 * params.bladder_volume_cc * 1000 / (4 * np.pi * 1.25 * 0.95)) ** (1 / 3)
        self.bladder_semi = np.array([1.25 * k, k, 0.95 * k])
        self.bladder_c = np.array(
            [
                px + params.bladder_offset[0],
                py + params.bladder_offset[1] - 0.15 * k,
                pz + c + 0.8 * self.bladder_semi[2],
            ]
        )
        self.rectum_y0 = py + b + params.rectum_radius + 1.0
        fy = py + params.femur_dy
        fz = pz + params.femur_dz
        self.femur_c = {
            "L": np.array([+params.femur_x, fy, fz]),
            "R": np.array([-params.femur_x, fy, fz]),
        }

    # -- primitive shapes -------------------------------------------------------------
    @staticmethod
    def _ellipsoid(
        grid: Grid, centre: np.ndarray, semi: np.ndarray, wobble: tuple[float, float] = (0.0, 0.0)
    ) -> np.ndarray:
        out = np.zeros(grid.shape, dtype=bool)
        centre, semi = np.asarray(centre, float), np.asarray(semi, float)
        sl, (x, y, z) = grid.box(centre - 1.2 * semi, centre + 1.2 * semi)
        r2 = ((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2 + ((z - centre[2]) / semi[2]) ** 2
        if wobble[0] > 0:
            ang = np.arctan2(y - centre[1], x - centre[0])
            elev = (z - centre[2]) / semi[2]
            r2 = r2 * (1 + wobble[0] * np.sin(3 * ang + wobble[1]) * np.cos(2 * elev))
        out[sl] = r2 <= 1.0
        return out

    @staticmethod
    def _capsule(grid: Grid, p0: np.ndarray, p1: np.ndarray, radius: float) -> np.ndarray:
        out = np.zeros(grid.shape, dtype=bool)
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        lo, hi = np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius
        sl, (x, y, z) = grid.box(lo, hi)
        v = p1 - p0
        t = ((x - p0[0]) * v[0] + (y - p0[1]) * v[1] + (z - p0[2]) * v[2]) / float(v @ v)
        t = np.clip(t, 0, 1)
        d2 = (x - p0[0] - t * v[0]) ** 2 + (y - p0[1] - t * v[1]) ** 2 + (z - p0[2] - t * v[2]) ** 2
        out[sl] = d2 <= radius**2
        return out

    def _rectum_centre(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        pz = p.prostate_centre[2]
        dz = z - pz
        cx = p.prostate_centre[0] + 4.0 * np.sin(dz / 35.0 + p.rectum_x_phase)
        cy = self.rectum_y0 + p.rectum_curvature * np.clip(dz, 0, None) ** 2 + 0.002 * np.clip(-dz, 0, None) ** 2
        return cx, cy

    def _rectum(self, grid: Grid, shrink: float = 0.0) -> np.ndarray:
        p = self.p
        pz = p.prostate_centre[2]
        out = np.zeros(grid.shape, dtype=bool)
        sz = grid.index_range("z", pz - 45.0, pz + p.rectum_top)
        z = grid.zs[sz]
        cx, cy = self._rectum_centre(z)
        r = p.rectum_radius * (1 + 0.15 * np.sin((z - pz) / 18.0)) - shrink
        x = grid.xs[None, None, :]
        y = grid.ys[None, :, None]
        d2 = ((x - cx[:, None, None]) / 1.15) ** 2 + (y - cy[:, None, None]) ** 2
        out[sz] = d2 <= (r[:, None, None] ** 2)
        return out

    def _body(self, grid: Grid, shrink: float = 0.0) -> np.ndarray:
        a, b = self.p.body_semi
        cy = self.p.body_centre_y
        x = grid.xs[None, None, :]
        y = grid.ys[None, :, None]
        z = grid.zs[:, None, None]
        scale = 1.0 + 0.0008 * (z - self.p.prostate_centre[2])  # wider towards the iliac crests
        inside = ((x / ((a - shrink) * scale)) ** 2 + ((y - cy) / (b - shrink)) ** 2) <= 1.0
        table = y <= cy + 0.93 * b - shrink
        return inside & table

    # -- organs -----------------------------------------------------------------------
    def masks(self, grid: Grid) -> dict[str, np.ndarray]:
        """Boolean masks of the anatomical structures (no PTVs, no helpers) on ``grid``."""
        p = self.p
        px, py, pz = p.prostate_centre
        body = self._body(grid)
        prostate = self._ellipsoid(grid, self.prostate_c, np.array(p.prostate_semi))
        sv = np.zeros(grid.shape, bool)
        for s in (-1, 1):
            c = np.array(
                [
                    px + s * p.sv_offset_x,
                    py + 0.6 * p.prostate_semi[1] + 4.0,
                    pz + p.prostate_semi[2] + 0.5 * p.sv_semi[2],
                ]
            )
            sv |= self._ellipsoid(grid, c, np.array(p.sv_semi))
        sv &= ~prostate
        rectum = self._rectum(grid)
        bladder = self._ellipsoid(grid, self.bladder_c, self.bladder_semi, p.bladder_wobble)
        bladder &= ~rectum & ~prostate
        femurs = {}
        for side, c in self.femur_c.items():
            sgn = 1.0 if side == "L" else -1.0
            head = self._ellipsoid(grid, c, np.full(3, p.femur_radius))
            neck_end = c + np.array([sgn * 38.0, 4.0, -34.0])
            neck = self._capsule(grid, c, neck_end, 0.6 * p.femur_radius)
            femurs[side] = (head | neck) & body
        bowel_top = grid.zs.max() + 10
        bowel_c = np.array([0.0, py - 30.0, (self.bladder_c[2] + bowel_top) / 2 + 15])
        bowel_semi = np.array(
            [p.body_semi[0] - p.fat_thickness - 35, p.body_semi[1] * 0.75, (bowel_top - self.bladder_c[2]) / 2 + 10]
        )
        bowel = self._ellipsoid(grid, bowel_c, bowel_semi) & self._body(grid, shrink=p.fat_thickness + 12)
        bowel &= grid.zs[:, None, None] > self.bladder_c[2] - 0.2 * self.bladder_semi[2]
        bowel &= ~bladder & ~rectum & ~sv & ~prostate & ~femurs["L"] & ~femurs["R"]
        for m in (prostate, sv, rectum, bladder):
            m &= body
        return {
            "BODY": body,
            "Prostate": prostate,
            "SeminalVesicles": sv,
            "Rectum": rectum,
            "Bladder": bladder,
            "Femur_L": femurs["L"],
            "Femur_R": femurs["R"],
            "Bowel": bowel,
        }

    def bones(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """(marrow, cortical) masks of the pelvic bones on ``grid``."""
        p = self.p
        _, py, pz = p.prostate_centre
        marrow = np.zeros(grid.shape, bool)
        cortical = np.zeros(grid.shape, bool)

        def add(shape: np.ndarray, shell: np.ndarray | None = None) -> None:
            nonlocal marrow, cortical
            marrow |= shape
            if shell is not None:
                cortical |= shell

        for side, c in self.femur_c.items():
            sgn = 1.0 if side == "L" else -1.0
            r = p.femur_radius
            head = self._ellipsoid(grid, c, np.full(3, r))
            add(head, head & ~self._ellipsoid(grid, c, np.full(3, r - 3)))
            neck_end = c + np.array([sgn * 38.0, 4.0, -34.0])
            add(self._capsule(grid, c, neck_end, 0.6 * r))
            shaft_bottom = neck_end + np.array([sgn * 6.0, 0.0, -200.0])
            shaft = self._capsule(grid, neck_end, shaft_bottom, 0.62 * r)
            add(shaft, shaft & ~self._capsule(grid, neck_end, shaft_bottom, 0.62 * r - 5))
            # acetabulum: medial half shell around the head
            cup = self._ellipsoid(grid, c, np.full(3, r + 7)) & ~self._ellipsoid(grid, c, np.full(3, r + 1.5))
            xs = grid.xs[None, None, :]
            cup &= (sgn * (xs - c[0])) < 6.0
            add(cup, cup)
            # pubic ramus to the symphysis, ischium below
            pub = np.array([sgn * 14.0, py - p.prostate_semi[1] - 24.0, pz + 4.0])
            add(self._capsule(grid, pub, c + np.array([-sgn * 18, -14.0, 8.0]), 9.0))
            add(self._ellipsoid(grid, pub, np.array([12.0, 9.0, 22.0])))
            isch = np.array([sgn * 55.0, py + 12.0, pz - 30.0])
            add(self._capsule(grid, isch, c + np.array([-sgn * 12, 18.0, -6.0]), 11.0))
            # iliac wing
            wing = np.array([sgn * (p.body_semi[0] - 75.0), c[1] + 20.0, c[2] + 85.0])
            w = self._ellipsoid(grid, wing, np.array([14.0, 55.0, 55.0]))
            add(w, w)
        sac_y = self.rectum_y0 + p.rectum_radius + 22.0
        sac = self._ellipsoid(grid, np.array([0.0, sac_y + 15.0, pz + 95.0]), np.array([48.0, 20.0, 70.0]))
        add(sac, sac & ~self._ellipsoid(grid, np.array([0.0, sac_y + 15.0, pz + 95.0]), np.array([44.0, 16.0, 66.0])))
        add(self._capsule(grid, np.array([0.0, sac_y, pz + 30.0]), np.array([0.0, sac_y - 10.0, pz - 5.0]), 8.0))
        body = self._body(grid)
        return marrow & body, cortical & body


def _expand(mask: np.ndarray, grid: Grid, margin_mm: float) -> np.ndarray:
    """Isotropic expansion of ``mask`` (indexed [z, y, x] on ``grid``) by ``margin_mm``."""
    return expand_mask(mask, grid.spacing[::-1], margin_mm)


def rasterise(
    phantom: Phantom, grid: Grid, rng: np.random.Generator | None = None, noise_hu: float = 12.0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw the phantom on ``grid``: HU volume (float32) and masks including PTV70/PTV56.

    Args:
        phantom: the anatomy.
        grid: target grid.
        rng: noise generator; None gives a noise-free image.
        noise_hu: standard deviation of the image noise, HU.
    """
    p = phantom.p
    m = phantom.masks(grid)
    body = m["BODY"]
    hu = np.full(grid.shape, HU["air"], dtype=np.float32)
    hu[body] = HU["fat"]
    inner = phantom._body(grid, shrink=p.fat_thickness)
    hu[inner] = HU["soft"]
    mesorectal = phantom._ellipsoid(grid, phantom.prostate_c + np.array([0, 18.0, 10.0]), np.array([48.0, 42.0, 65.0]))
    hu[mesorectal & inner] = -80.0
    hu[m["Bowel"]] = HU["bowel"]
    marrow, cortical = phantom.bones(grid)
    hu[marrow] = HU["marrow"]
    hu[cortical] = HU["cortical"]
    hu[m["Prostate"]] = HU["prostate"]
    hu[m["SeminalVesicles"]] = HU["prostate"] - 5
    hu[m["Bladder"]] = HU["urine"]
    hu[m["Rectum"]] = HU["rectum_wall"]
    lumen = phantom._rectum(grid, shrink=3.0)
    hu[lumen] = HU["stool"]
    grng = np.random.default_rng(p.gas_seed)
    if p.rectum_gas:
        zc = p.prostate_centre[2] + grng.uniform(-10, 30)
        cx, cy = phantom._rectum_centre(np.array([zc]))
        gas = phantom._ellipsoid(
            grid, np.array([cx[0], cy[0] - 2, zc]), np.array([p.rectum_radius * 0.6, p.rectum_radius * 0.45, 14.0])
        )
        hu[gas & lumen] = HU["gas"]
    # gas pockets in the bowel
    bz = np.nonzero(m["Bowel"].any(axis=(1, 2)))[0]
    if bz.size:
        for _ in range(12):
            c = np.array(
                [
                    grng.uniform(-90, 90),
                    p.prostate_centre[1] - grng.uniform(20, 80),
                    grng.uniform(grid.zs[bz[0]], grid.zs[bz[-1]]),
                ]
            )
            pocket = phantom._ellipsoid(grid, c, grng.uniform(5, 14, size=3))
            hu[pocket & m["Bowel"]] = HU["gas"]
    if rng is not None and noise_hu > 0:
        hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32) * body
    # targets: PTV70 = prostate + margin; PTV56 = (prostate + seminal vesicles) + margin, contains PTV70
    ptv70 = _expand(m["Prostate"], grid, p.ptv70_margin_mm) & body
    ptv56 = (_expand(m["Prostate"] | m["SeminalVesicles"], grid, p.ptv56_margin_mm) | ptv70) & body
    m["PTV70"] = ptv70
    m["PTV56"] = ptv56
    return hu, m


def helper_masks(m: dict[str, np.ndarray], grid: Grid) -> dict[str, np.ndarray]:
    """Optimisation helper structures a planner would draw (keys are helper kinds)."""
    ptv70, ptv56 = m["PTV70"], m["PTV56"]
    ptv56_3 = _expand(ptv56, grid, 3.0)
    return {
        "ring70": _expand(ptv70, grid, 20.0) & ~_expand(ptv70, grid, 5.0) & m["BODY"],
        "ptv56_minus_70": ptv56 & ~ptv70,
        "opt_rectum": m["Rectum"] & ~ptv56_3,
        "opt_bladder": m["Bladder"] & ~ptv56_3,
        "rectum_minus_ptv": m["Rectum"] & ~ptv56,
        "hotspot": _expand(ptv70, grid, 5.0) & ~_expand(ptv70, grid, 1.0) & m["BODY"],
    }
