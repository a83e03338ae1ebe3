"""A simple but physically shaped VMAT dose model for the synthetic cohort.

For each gantry angle of a full arc the model projects the targets into the beam's-eye view
(the aperture), blurs the aperture with a Gaussian penumbra, attenuates it exponentially with
radiological depth through the CT densities (with build-up and inverse square), and adds a
broad scatter kernel (the low-dose bath). Dose is zero outside the body.

Apertures are split into components: boost (PTV70) and elective (PTV56 only) rays, each
divided by which organ the ray crosses (rectum, bladder, femoral heads, none). A small
non-negative least-squares "optimiser" weights the components against the target doses and
the case's own dose-volume goals (Wu–Mohan style DVH objectives plus a push-down term whose
weight grows as a goal tightens), so a tighter rectum goal gives less rectum dose. The plan is
then normalised so that PTV70 D95 equals the prescription. The MU over the arc follow the
anatomy (attenuation compensation); nothing in the dose is random except the optimiser's voxel
sample, so the dose is (nearly) a function of the CT, the contours and the goals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, optimize

from vmat_monai.constraints import ConstraintVector
from vmat_monai.data.synthetic.goals import goal_tightness
from vmat_monai.geometry import Grid
from vmat_monai.transforms.beam_prior import hu_to_density as _hu_to_density

__all__ = [
    "DOSE_MODEL_VERSION",
    "ArcModel",
    "DoseResult",
    "angle_modulation",
    "compute_plan_dose",
    "hu_to_density",
]

DOSE_MODEL_VERSION = 3
"""Bumped when the model changes the dose of a given seed (2: MU over the arc from the anatomy;
3: structures missing from the structure set are not spared)."""

ORGAN_SPLIT = ("Rectum", "Bladder", "Femur")
"""Organs whose crossing rays get their own weight, in priority order."""
SECTORS = ("anterior", "left", "posterior", "right")
"""Gantry sectors (90 degrees each, centred on 0, 90, 180, 270) with their own weights."""


@dataclass(frozen=True)
class ArcModel:
    """Beam model parameters.

    Args:
        n_angles: gantry angles per full arc (two arcs share them, CW and CCW).
        mu_per_mm: effective linear attenuation of water, 1/mm (about 6-10 MV).
        penumbra_mm: Gaussian sigma of the aperture edge, mm.
        buildup_mm: depth scale of the build-up region, mm.
        scatter_sigma_mm: sigma of the scatter kernel, mm.
        scatter_fraction: share of the scatter component relative to the primary.
        sad_mm: source-axis distance, mm.
        aperture_margin_mm: leaf margin added around the target projection, mm.
        sub_beams: each gantry angle's dose is spread over this many sub-angles across its
            angular step (rotations about the isocentre), as a continuous arc delivers it;
            without it 36 discrete beams leave streaks in the low-dose region.
        mu_compensation: exponent of the per-angle MU variation with the radiological depth of
            the isocentre (see :func:`angle_modulation`); 0 gives equal MU at every angle.
    """

    n_angles: int = 36
    mu_per_mm: float = 0.0045
    penumbra_mm: float = 3.0
    buildup_mm: float = 8.0
    scatter_sigma_mm: float = 18.0
    scatter_fraction: float = 0.18
    sad_mm: float = 1000.0
    aperture_margin_mm: float = 5.0
    sub_beams: int = 3
    mu_compensation: float = 0.5


def _rotate_xy(vol: torch.Tensor, xs: np.ndarray, ys: np.ndarray, iso: np.ndarray, deg: float) -> torch.Tensor:
    """``vol`` (C, Z, Y, X) rotated by ``deg`` about the isocentre in the axial plane (bilinear, 0 outside)."""
    th = np.deg2rad(deg)
    c, s = float(np.cos(th)), float(np.sin(th))
    X, Y = torch.meshgrid(torch.from_numpy(xs), torch.from_numpy(ys), indexing="xy")
    dx, dy = X - iso[0], Y - iso[1]
    sx = c * dx + s * dy + iso[0]
    sy = -s * dx + c * dy + iso[1]
    gx = 2 * (sx - xs[0]) / (xs[-1] - xs[0]) - 1
    gy = 2 * (sy - ys[0]) / (ys[-1] - ys[0]) - 1
    g = torch.stack([gx, gy], dim=-1).float()[None].expand(vol.shape[1], -1, -1, -1)
    out = F.grid_sample(vol.permute(1, 0, 2, 3), g, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.permute(1, 0, 2, 3)


@dataclass
class DoseResult:
    """Dose on the dose grid and what the optimiser did."""

    dose_gy: np.ndarray
    weights: np.ndarray
    component_names: list[str]
    normalisation: float


def hu_to_density(hu: np.ndarray) -> np.ndarray:
    """Relative electron density from HU (bilinear calibration, water = 1): the beam dose prior's
    calibration (:func:`vmat_monai.transforms.beam_prior.hu_to_density`), as float32 numpy."""
    return _hu_to_density(torch.from_numpy(np.asarray(hu, dtype=np.float32))).numpy()


def _gauss1d(sigma_px: float) -> torch.Tensor:
    r = max(1, int(np.ceil(3 * sigma_px)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma_px, 1e-3)) ** 2)
    return k / k.sum()


def _blur2d(img: torch.Tensor, sz_px: float, su_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, Z, U) images along Z and U."""
    c = img.shape[0]
    x = img[:, None]
    kz, ku = _gauss1d(sz_px), _gauss1d(su_px)
    x = F.conv2d(F.pad(x, (0, 0, len(kz) // 2, len(kz) // 2), mode="replicate"), kz.view(1, 1, -1, 1))
    x = F.conv2d(F.pad(x, (len(ku) // 2, len(ku) // 2, 0, 0), mode="replicate"), ku.view(1, 1, 1, -1))
    return x.view(c, *img.shape[1:])


def _component_doses(
    density: np.ndarray,
    masks: Mapping[str, np.ndarray],
    grid: Grid,
    iso: np.ndarray,
    model: ArcModel,
    angle_weights: np.ndarray,
) -> _Components:
    """Dose of each aperture component summed over the arc on ``grid``, arbitrary units."""
    sx, sy, sz = grid.spacing
    h = min(sx, sy)
    nz, ny, nx = grid.shape
    # z range that the primary beams reach (targets plus penumbra)
    tz = np.nonzero((masks["PTV56"] | masks["PTV70"]).any(axis=(1, 2)))[0]
    z0 = max(int(tz[0]) - int(np.ceil(25 / sz)), 0)
    z1 = min(int(tz[-1]) + int(np.ceil(25 / sz)) + 1, nz)
    zsl = slice(z0, z1)
    femur = masks.get("Femur_L", np.zeros(grid.shape, bool)) | masks.get("Femur_R", np.zeros(grid.shape, bool))
    chans = [density, masks["PTV70"], masks["PTV56"], masks["Rectum"], masks["Bladder"], femur, masks["BODY"]]
    vol = torch.from_numpy(np.stack([np.asarray(c[zsl], np.float32) for c in chans], axis=1))  # (Z, C, Y, X)
    nzc = vol.shape[0]
    # beam frame: u across the beam, w along it (source -> patient), both through the isocentre
    ext = np.array([(nx - 1) * sx, (ny - 1) * sy])
    half = float(np.hypot(*ext)) / 2 + 10
    n = int(np.ceil(2 * half / h)) + 1
    t = torch.linspace(-half, half, n, dtype=torch.float64)
    W, U = torch.meshgrid(t, t, indexing="ij")  # (n_w, n_u)
    xs, ys = grid.xs, grid.ys
    X, Y = torch.meshgrid(torch.from_numpy(xs), torch.from_numpy(ys), indexing="xy")  # (ny, nx)
    dx, dy = X - iso[0], Y - iso[1]
    sig_z = model.penumbra_mm / sz
    sig_u = model.penumbra_mm / h
    margin_u = max(1, round(model.aperture_margin_mm / h))
    margin_z = max(1, round(model.aperture_margin_mm / sz))
    per_angle = [f"{t}_{o}" for t in ("boost", "elective") for o in (*ORGAN_SPLIT, "open")]
    names = [f"{sec}_{n}" for sec in SECTORS for n in per_angle]
    out = torch.zeros((len(names), nzc, ny, nx), dtype=torch.float32)
    angles_deg = np.arange(model.n_angles) * 360.0 / model.n_angles
    for k, theta in enumerate(np.deg2rad(angles_deg)):
        d = np.array([-np.sin(theta), np.cos(theta)])  # beam direction in (x, y)
        e = np.array([np.cos(theta), np.sin(theta)])  # across the beam
        px = iso[0] + U * e[0] + W * d[0]
        py = iso[1] + U * e[1] + W * d[1]
        gx = 2 * (px - xs[0]) / (xs[-1] - xs[0]) - 1
        gy = 2 * (py - ys[0]) / (ys[-1] - ys[0]) - 1
        g = torch.stack([gx, gy], dim=-1).float()[None].expand(nzc, -1, -1, -1)
        rot = F.grid_sample(vol, g, mode="bilinear", padding_mode="zeros", align_corners=True)  # (Z, C, n_w, n_u)
        depth = torch.cumsum(rot[:, 0], dim=1) * h  # radiological depth, mm
        proj = rot[:, 1:6].amax(dim=2)  # (Z, 5, n_u): max along the ray
        # leaf margin around the projection, across the beam (u) and along the couch axis (z)
        proj = F.max_pool2d(
            proj.permute(1, 0, 2)[None], (2 * margin_z + 1, 2 * margin_u + 1), stride=1, padding=(margin_z, margin_u)
        )[0].permute(1, 0, 2)
        ptv70, ptv56, rect, blad, fem = (proj[:, i] > 0.5 for i in range(5))
        elective = ptv56 | ptv70  # the elective field covers both targets; the boost adds on top
        organ_sel = [rect, blad & ~rect, fem & ~rect & ~blad, ~rect & ~blad & ~fem]
        apert = torch.stack([(tg & o).float() for tg in (ptv70, elective) for o in organ_sel])  # (8, Z, n_u)
        apert = _blur2d(apert, sig_z, sig_u)
        w = t.float()
        isl = (model.sad_mm / (model.sad_mm + w)) ** 2
        attn = torch.exp(-model.mu_per_mm * depth) * (1 - 0.6 * torch.exp(-depth / model.buildup_mm))
        att = attn * isl[None, :, None] * (rot[:, 6] > 0.5)  # (Z, n_w, n_u)
        frame = apert.permute(1, 0, 2)[:, :, None, :] * att[:, None]  # (Z, 8, n_w, n_u)
        # back to the patient grid: (u, w) of every voxel
        uu = dx * e[0] + dy * e[1]
        ww = dx * d[0] + dy * d[1]
        bg = torch.stack([uu / half, ww / half], dim=-1).float()[None].expand(nzc, -1, -1, -1)
        back = F.grid_sample(frame, bg, mode="bilinear", padding_mode="zeros", align_corners=True)
        sec = int(((angles_deg[k] + 45.0) % 360.0) // 90.0)
        c0 = sec * len(per_angle)
        out[c0 : c0 + len(per_angle)] += float(angle_weights[k]) * back.permute(1, 0, 2, 3)
    if model.sub_beams > 1:  # continuous arc: spread every beam over its angular step
        step = 360.0 / model.n_angles
        offsets = ((np.arange(model.sub_beams) + 0.5) / model.sub_beams - 0.5) * step
        acc = out * float(np.isclose(offsets, 0).sum())
        for off in offsets[~np.isclose(offsets, 0)]:
            acc += _rotate_xy(out, xs, ys, iso, float(off))
        out = acc / model.sub_beams
    primary = np.zeros((len(names), nz, ny, nx), dtype=np.float32)
    primary[:, zsl] = out.numpy()
    body = masks["BODY"].astype(np.float32)
    primary *= body[None]
    # low-dose bath: broad scatter kernel, kept on a 2x coarser grid for speed
    sigma = [model.scatter_sigma_mm / (2 * s) for s in (sz, sy, sx)]
    scatter = np.stack(
        [
            model.scatter_fraction
            * ndimage.gaussian_filter(primary[c, ::2, ::2, ::2], sigma, mode="constant", truncate=2.5)
            for c in range(len(names))
        ]
    )
    return _Components(primary, scatter, body, names)


@dataclass
class _Components:
    """Per-component dose: primary on the dose grid, scatter on the 2x coarser grid."""

    primary: np.ndarray  # (C, Z, Y, X)
    scatter: np.ndarray  # (C, Zc, Yc, Xc), voxel i at fine index 2i
    body: np.ndarray
    names: list[str]

    def at(self, idx: np.ndarray) -> np.ndarray:
        """Component doses at flat voxel indices: (n, C)."""
        zyx = np.stack(np.unravel_index(idx, self.body.shape)).astype(np.float64) / 2.0
        sc = np.stack([ndimage.map_coordinates(c, zyx, order=1, mode="nearest") for c in self.scatter])
        flat = self.primary.reshape(len(self.names), -1)[:, idx]
        return (flat + sc * self.body.reshape(-1)[idx]).T

    def combine(self, w: np.ndarray) -> np.ndarray:
        """Total dose for component weights ``w`` (Z, Y, X)."""
        dose = np.tensordot(w.astype(np.float32), self.primary, axes=1)
        sc = np.tensordot(w.astype(np.float32), self.scatter, axes=1)
        coords = np.indices(self.body.shape, dtype=np.float32) / 2.0
        dose += ndimage.map_coordinates(sc, coords, order=1, mode="nearest") * self.body
        # every term is non-negative; float round-off in the blurs can leave -1e-22: clip it
        return np.maximum(dose, 0.0)


def angle_modulation(density: np.ndarray, grid: Grid, iso: np.ndarray, ptv: np.ndarray, model: ArcModel) -> np.ndarray:
    """Relative MU per gantry angle: more where the path to the isocentre is radiologically longer.

    An optimiser's MU variation over the arc follows the anatomy (it compensates attenuation);
    the model uses ``(depth / mean depth) ** model.mu_compensation``, clipped to [0.75, 1.33],
    with the radiological depth (mm water) from the body surface to the isocentre in the axial
    slice through the target's centre. A deterministic function of the CT, so the plan dose
    carries no per-plan randomness that the network's inputs do not hold.
    """
    zc = round(float(np.argwhere(ptv)[:, 0].mean()))
    rho = np.asarray(density[zc], np.float64)
    h = min(grid.spacing[0], grid.spacing[1])
    reach = float(np.hypot((grid.shape[2] - 1) * grid.spacing[0], (grid.shape[1] - 1) * grid.spacing[1]))
    w = np.arange(0.0, reach, h)
    angles = np.deg2rad(np.arange(model.n_angles) * 360.0 / model.n_angles)
    depth = np.empty(model.n_angles)
    for k, theta in enumerate(angles):
        d = np.array([-np.sin(theta), np.cos(theta)])  # beam direction (source -> patient), as in the dose
        px, py = iso[0] - w * d[0], iso[1] - w * d[1]  # from the isocentre back towards the source
        ix = (px - grid.xs[0]) / grid.spacing[0]
        iy = (py - grid.ys[0]) / grid.spacing[1]
        depth[k] = ndimage.map_coordinates(rho, [iy, ix], order=1, mode="constant", cval=0.0).sum() * h
    rel = depth / max(float(depth.mean()), 1e-6)
    return np.clip(rel**model.mu_compensation, 0.75, 1.33)


def _dvh_rows(d: np.ndarray, dose_gy: float, max_fraction: float, n_total: int) -> np.ndarray:
    """Indices of voxels to push below ``dose_gy`` so at most ``max_fraction`` exceed it (Wu–Mohan)."""
    allowed = int(np.floor(max_fraction * n_total))
    over = np.nonzero(d > dose_gy)[0]
    if over.size <= allowed:
        return np.zeros(0, dtype=int)
    order = over[np.argsort(d[over])]  # ascending: the cheapest voxels to bring under
    return order[: over.size - allowed]


def compute_plan_dose(
    density: np.ndarray,
    masks: Mapping[str, np.ndarray],
    grid: Grid,
    goals: ConstraintVector,
    rng: np.random.Generator,
    model: ArcModel | None = None,
    prescriptions_gy: Mapping[str, float] | None = None,
    n_iter: int = 6,
    max_samples: int = 6000,
    hot_weight: float = 4.0,
) -> DoseResult:
    """Optimise and compute the plan dose on ``grid``, Gy, normalised to PTV70 D95 on this grid.

    Args:
        density: relative electron density on ``grid`` (Z, Y, X).
        masks: boolean masks on ``grid``: BODY, PTV70, PTV56, Rectum, Bladder, Femur_L/R, Bowel.
        grid: the dose grid.
        goals: the case's clinical goals (natural units).
        rng: random generator for the optimiser's voxel sampling.
        model: beam model; defaults to :class:`ArcModel`.
        prescriptions_gy: target doses, default PTV70 = 70, PTV56 = 56 Gy.
        n_iter: DVH-objective reweighting iterations.
        max_samples: voxels sampled per structure for the optimiser.
        hot_weight: weight of the PTV70 hot-spot objective relative to the coverage objective.
    """
    model = model or ArcModel()
    rx = dict(prescriptions_gy or {"PTV70": 70.0, "PTV56": 56.0})
    ptv = masks["PTV70"]
    nzi = np.argwhere(ptv)
    iso = np.array([grid.xs[nzi[:, 2]].mean(), grid.ys[nzi[:, 1]].mean()])
    mod = angle_modulation(density, grid, iso, ptv, model)
    comp = _component_doses(density, masks, grid, iso, model, mod)
    names = comp.names

    def sample(mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        if idx.size > max_samples:
            idx = rng.choice(idx, max_samples, replace=False)
        return idx

    g = goals.as_goals()
    ptv56_only = masks["PTV56"] & ~masks["PTV70"]
    femur = masks.get("Femur_L", np.zeros(grid.shape, bool)) | masks.get("Femur_R", np.zeros(grid.shape, bool))
    organ_sets = {
        "Rectum": masks["Rectum"],
        "Bladder": masks["Bladder"],
        "Femur": femur,
        "Bowel": masks.get("Bowel", np.zeros(grid.shape, bool)),
    }
    idx70, idx56 = sample(ptv), sample(ptv56_only)
    # like a planner's opt_ structures: organ objectives act outside the PTVs (plus 3 mm)
    opt_outside = ~ndimage.binary_dilation(masks["PTV56"], iterations=1)
    organ_idx = {k: sample(v & opt_outside) for k, v in organ_sets.items()}
    push_idx = organ_idx
    ring = ndimage.binary_dilation(masks["PTV56"], iterations=6) & ~masks["PTV56"] & masks["BODY"]
    idx_ring = sample(ring)
    vx = {
        "Rectum": [(50.0, g["rectum_V50"]), (60.0, g["rectum_V60"]), (70.0, g["rectum_V70"])],
        "Bladder": [(65.0, g["bladder_V65"]), (70.0, g["bladder_V70"]), (75.0, g["bladder_V75"])],
        "Femur": [(50.0, g["femur_V50"])],
    }
    # push-down weights grow with the square of the organ's tightness (its goals against the protocol's)
    tight = goal_tightness(g)
    ring_gy, ring_weight = 0.9 * rx["PTV56"], 0.5
    base_push = {"Rectum": 0.02, "Bladder": 0.01, "Femur": 0.004, "Bowel": 0.004}
    A70, A56, Aring = comp.at(idx70), comp.at(idx56), comp.at(idx_ring)
    ptv_flat = np.flatnonzero(ptv)
    Aorg = {k: comp.at(v) for k, v in organ_idx.items()}
    Apush = {k: comp.at(v) for k, v in push_idx.items()}
    scale = np.median(A70.sum(axis=1)) if idx70.size else 1.0
    w0 = np.full(len(names), rx["PTV70"] / max(scale, 1e-6))

    def _solve(w: np.ndarray, hot_weight: float) -> np.ndarray:
        for _ in range(n_iter):
            rows, rhs = (
                [A70 * np.sqrt(1.0 / len(idx70))],
                [np.full(len(idx70), rx["PTV70"]) * np.sqrt(1.0 / len(idx70))],
            )
            d70 = A70 @ w
            hot70 = d70 > np.percentile(d70, 5) * 1.035 if idx70.size else d70 > 0
            if hot70.any():  # homogeneity: hot spots in the boost volume cost extra
                rows.append(A70[hot70] * np.sqrt(hot_weight / len(idx70)))
                rhs.append(np.full(int(hot70.sum()), rx["PTV70"]) * np.sqrt(hot_weight / len(idx70)))
            if idx56.size:  # elective target: only under-dosage costs (the boost spills into it)
                cold = (A56 @ w) < rx["PTV56"] * 1.03
                rows.append(A56[cold] * np.sqrt(1.0 / len(idx56)))
                rhs.append(np.full(int(cold.sum()), rx["PTV56"] * 1.03) * np.sqrt(1.0 / len(idx56)))
            for organ, idx in push_idx.items():
                if idx.size:
                    lam = base_push[organ] * tight[organ] ** 2 / len(idx)
                    rows.append(Apush[organ] * np.sqrt(lam))
                    rhs.append(np.zeros(len(idx)))
            for organ, goals_o in vx.items():
                idx = organ_idx[organ]
                if not idx.size:
                    continue
                d = Aorg[organ] @ w
                for dose_gy, frac in goals_o:
                    sel = _dvh_rows(d, dose_gy, frac * 0.8, len(idx))
                    if sel.size:
                        lam = 0.3 / len(idx)
                        rows.append(Aorg[organ][sel] * np.sqrt(lam))
                        rhs.append(np.full(sel.size, dose_gy * 0.97) * np.sqrt(lam))
            bidx = organ_idx["Bowel"]
            if bidx.size:
                d = Aorg["Bowel"] @ w
                frac = g["bowel_V45cc"] * 1000.0 / (np.prod(grid.spacing) * organ_sets["Bowel"].sum())
                sel = _dvh_rows(d, 45.0, min(frac, 1.0) * 0.8, len(bidx))
                if sel.size:
                    rows.append(Aorg["Bowel"][sel] * np.sqrt(0.3 / len(bidx)))
                    rhs.append(np.full(sel.size, 45.0 * 0.97) * np.sqrt(0.3 / len(bidx)))
            if idx_ring.size:
                d = Aring @ w
                hot = d > ring_gy
                if hot.any():  # conformity: dose falls off outside the PTVs
                    rows.append(Aring[hot] * np.sqrt(ring_weight / len(idx_ring)))
                    rhs.append(np.full(int(hot.sum()), ring_gy) * np.sqrt(ring_weight / len(idx_ring)))
            A, b = np.concatenate(rows), np.concatenate(rhs)
            w = optimize.lsq_linear(A, b, bounds=(0, np.inf), method="bvls").x
        return w

    best: tuple[float, np.ndarray, float] | None = None
    for _attempt in range(4):
        w = _solve(w0, hot_weight)
        d_ptv = comp.at(ptv_flat) @ w
        norm = rx["PTV70"] / np.percentile(d_ptv, 5)
        hottest = float(d_ptv.max() * norm)
        if best is None or hottest < best[0]:
            best = (hottest, w, norm)
        if hottest <= 1.055 * rx["PTV70"]:
            break
        hot_weight *= 2.5  # too inhomogeneous: make hot spots dearer and solve again
    _, w, norm = best
    dose = comp.combine(w) * norm
    return DoseResult(dose_gy=dose.astype(np.float32), weights=w * norm, component_names=names, normalisation=norm)
