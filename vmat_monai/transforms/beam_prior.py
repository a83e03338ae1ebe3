"""A physics-shaped first guess of the dose from the plan's beam arrangement, CT and contours.

Dose-prediction networks learn faster when they see a rough dose instead of having to invent the
low-dose bath from distances alone (the same idea as the beam-geometry and "distance + ray"
channels of the dose-prediction literature). :class:`BeamDosePrior` computes, on a coarse grid,
the dose of the plan's beams (a :class:`~vmat_monai.transforms.beam_arrangement.BeamArrangement`: static fields and/or
arcs, sampled every ``arc_step_deg``), each with an aperture that is the beam's-eye-view
projection of a target plus a leaf margin, blurred by a penumbra, attenuated through the CT's
radiological depth (with build-up and inverse square) and spread by a broad scatter kernel.
One such arrangement per target; their weights are the non-negative least-squares fit of the
targets' median doses to their prescription levels. No organ sparing, no optimisation against
goals: that is what the network adds. Couch angles are ignored (every beam is computed coplanar).

Output: (1, *spatial) relative dose (median 1 in the primary target), 0 outside the body, on
the input grid; with ``sectors=3`` the same dose split by where the beams enter (anterior,
posterior, lateral: the channels sum to the one-channel prior). Depends on numpy, scipy, torch
and MONAI only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from scipy import optimize

from vmat_monai.transforms.array import spacing_of
from vmat_monai.transforms.beam_arrangement import BeamArrangement, protocol

__all__ = ["BeamDosePrior", "hu_to_density"]


def hu_to_density(hu: torch.Tensor) -> torch.Tensor:
    """Relative electron density from HU (bilinear calibration, water = 1, clipped to [0, 2.5])."""
    rho = torch.where(hu <= 0, 1.0 + hu / 1000.0, 1.0 + hu / 1950.0)
    return rho.clamp(0.0, 2.5)


def _gauss1d(sigma_px: float) -> torch.Tensor:
    r = max(1, int(np.ceil(3 * sigma_px)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma_px, 1e-3)) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigmas_px: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of (N, *spatial) over every spatial axis, zero padding."""
    n = x.ndim - 1
    out = x[:, None]
    for axis, s in enumerate(sigmas_px):
        k = _gauss1d(float(s))
        shape = [1, 1] + [1] * n
        shape[2 + axis] = len(k)
        pad = [0, 0] * n
        pad[2 * (n - 1 - axis)] = pad[2 * (n - 1 - axis) + 1] = len(k) // 2
        conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
        out = conv(F.pad(out, pad), k.view(shape))
    return out[:, 0]


class BeamDosePrior(Transform):
    """CT (HU) + target masks + body -> relative dose of the beam arrangement per target, (S, *spatial).

    The spatial axes must be RAS (as after ``Orientationd(axcodes="RAS")``: the first two the
    axial plane, the third the couch axis), so that IEC gantry angles enter where they should;
    spacing comes from the CT's affine. The isocentre is the primary target's centroid. Computed
    on a grid of about ``grid_mm`` and interpolated back.

    Args:
        target_channels: mask channels of the targets.
        target_levels: their prescribed doses (any unit; only ratios matter); the highest is
            the primary target, whose median prior dose is scaled to 1.
        beams: the arrangement (or the name of a protocol in :data:`vmat_monai.transforms.beam_arrangement.PROTOCOLS`)
            used when a call passes none; default ``arc360``, one full arc.
        arc_step_deg: arcs are computed every this many degrees.
        margin_mm: leaf margin around each target's projection, mm.
        penumbra_mm: Gaussian sigma of the aperture edge, mm.
        mu_per_mm: effective attenuation of water, 1/mm (about 6 MV).
        scatter_sigma_mm: sigma of the scatter kernel, mm.
        scatter_fraction: scatter relative to primary.
        grid_mm: voxel size of the calculation grid, mm.
        sad_mm: source-axis distance, mm.
        sectors: 1 (the whole arc in one channel) or 3 (channels by the beams' entry side:
            anterior between 135° and 225°, posterior between 315° and 45°, lateral the rest
            including those boundaries; gantry angle 0 = beam entering from the posterior; left
            and right share a channel so a left-right flip leaves every channel's meaning unchanged).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        target_channels: Sequence[int],
        target_levels: Sequence[float],
        beams: BeamArrangement | str = "arc360",
        arc_step_deg: float = 5.0,
        margin_mm: float = 5.0,
        penumbra_mm: float = 3.0,
        mu_per_mm: float = 0.0045,
        scatter_sigma_mm: float = 18.0,
        scatter_fraction: float = 0.18,
        grid_mm: float = 5.0,
        sad_mm: float = 1000.0,
        sectors: int = 1,
    ) -> None:
        if len(target_channels) != len(target_levels) or not target_channels:
            raise ValueError("one dose level per target channel is needed (and at least one target)")
        if min(target_levels) <= 0:
            raise ValueError(f"target levels must be positive, got {list(target_levels)}")
        self.channels = [int(c) for c in target_channels]
        self.levels = np.asarray(target_levels, dtype=np.float64)
        self.beams = protocol(beams) if isinstance(beams, str) else beams
        if not 0 < arc_step_deg <= 90:
            raise ValueError(f"arc_step_deg must be in (0, 90] degrees, got {arc_step_deg}")
        self.arc_step_deg = float(arc_step_deg)
        self.margin_mm, self.penumbra_mm = float(margin_mm), float(penumbra_mm)
        self.mu, self.sad = float(mu_per_mm), float(sad_mm)
        self.scatter_sigma_mm, self.scatter_fraction = float(scatter_sigma_mm), float(scatter_fraction)
        self.grid_mm = float(grid_mm)
        if sectors not in (1, 3):
            raise ValueError(f"sectors must be 1 or 3, got {sectors}")
        self.sectors = int(sectors)

    def __call__(
        self,
        image: NdarrayOrTensor,
        masks: NdarrayOrTensor,
        body: NdarrayOrTensor,
        beams: BeamArrangement | None = None,
    ) -> NdarrayOrTensor:
        """Returns (``sectors``, X, Y, Z).

        Args:
            image: CT in HU, (1, X, Y, Z), with an affine (or spacing known to ``spacing_of``).
            masks: (C, X, Y, Z) binary structure masks on the same grid.
            body: (1, X, Y, Z) external contour.
            beams: this case's arrangement (default: the one given at construction).
        """
        sp = spacing_of(image)
        ct = convert_to_tensor(image, track_meta=False).detach().float().cpu()
        m = convert_to_tensor(masks, track_meta=False).detach().cpu() > 0.5
        b = convert_to_tensor(body, track_meta=False).detach().cpu() > 0.5
        if ct.shape[1:] != m.shape[1:] or ct.shape[1:] != b.shape[1:]:
            raise ValueError(f"CT {tuple(ct.shape)}, masks {tuple(m.shape)} and body {tuple(b.shape)} differ in shape")
        present = [i for i, c in enumerate(self.channels) if m[c].any()]
        if not present:
            raise ValueError("the beam dose prior needs at least one non-empty target mask; no target has voxels")
        arrangement = beams if beams is not None else self.beams
        out = self._compute(
            ct[0], m[[self.channels[i] for i in present]].float(), b[0].float(), sp, present, arrangement
        )
        if isinstance(image, MetaTensor):
            return MetaTensor(out, meta=image.meta, applied_operations=list(image.applied_operations))
        if isinstance(image, torch.Tensor):
            return out.to(image.device)
        return out.numpy()

    def _compute(
        self,
        ct: torch.Tensor,
        targets: torch.Tensor,
        body: torch.Tensor,
        sp: np.ndarray,
        present: list[int],
        beams: BeamArrangement,
    ) -> torch.Tensor:
        shape = ct.shape
        f = [max(1, round(self.grid_mm / s)) for s in sp]
        csp = np.asarray(sp) * f  # coarse spacing, mm

        def pool(v: torch.Tensor) -> torch.Tensor:
            return F.avg_pool3d(v[None], kernel_size=f, stride=f, ceil_mode=True)[0]

        rho = pool((hu_to_density(ct) * body)[None])[0]
        share = pool(targets)  # fraction of each coarse voxel inside each target
        tg = share > 0.5
        for i in range(tg.shape[0]):  # a target smaller than a coarse voxel still gets its voxel
            if not tg[i].any():
                tg[i] = share[i] == share[i].max()
        bd = pool(body[None])[0] > 0.5
        k = int(np.argmax(self.levels[present]))
        comps = self._beams(rho, tg, bd, csp, tg[k], beams)  # (S, T, x, y, z)
        weights = self._weights(comps.sum(dim=0), tg, present)
        coarse = torch.tensordot(comps, torch.as_tensor(weights, dtype=torch.float32), dims=([1], [0]))
        # back to the input grid: coarse voxel i is the mean of input voxels i*f .. i*f + f - 1
        full = F.interpolate(
            coarse[None], scale_factor=[float(v) for v in f], mode="trilinear", recompute_scale_factor=False
        )[0, :, : shape[0], : shape[1], : shape[2]]
        full = full.clamp_min(0.0) * body
        return full / max(float(full.sum(dim=0)[targets[k] > 0.5].median()), 1e-6)

    def _beams(
        self,
        rho: torch.Tensor,
        targets: torch.Tensor,
        body: torch.Tensor,
        sp: np.ndarray,
        primary: torch.Tensor,
        beams: BeamArrangement,
    ) -> torch.Tensor:
        """Dose of the arrangement per target on the coarse grid (S, T, X, Y, Z) by sector, arbitrary
        units; isocentre at the centroid of ``primary``.

        Internal angle ``theta`` (RAS axes): beam direction (-sin theta, cos theta), so theta = 0 is
        a beam travelling anteriorly (entering posteriorly); an IEC gantry angle g (HFS; source
        anterior at 0°, on the patient's left at 90°) is theta = g + 180°."""
        nx, ny, nz = rho.shape
        t_count = targets.shape[0]
        h = float(min(sp[0], sp[1]))
        xs = torch.arange(nx, dtype=torch.float64) * sp[0]
        ys = torch.arange(ny, dtype=torch.float64) * sp[1]
        idx = torch.nonzero(primary).double()
        iso = np.array([float(idx[:, 0].mean()) * sp[0], float(idx[:, 1].mean()) * sp[1]])
        # beam frame: u across the beam, w along it, both through the isocentre; (Z, C, n_w, n_u)
        half = float(np.hypot(xs[-1], ys[-1])) / 2 + float(np.hypot(*np.abs(iso - [xs[-1] / 2, ys[-1] / 2]))) + 10
        n = int(np.ceil(2 * half / h)) + 1
        t = torch.linspace(-half, half, n, dtype=torch.float64)
        w_grid, u_grid = torch.meshgrid(t, t, indexing="ij")
        vol = torch.cat([rho[None], targets.float(), body[None].float()]).permute(3, 0, 2, 1)  # (Z, C, Y, X)
        xg, yg = torch.meshgrid(xs, ys, indexing="xy")  # (ny, nx)
        dx, dy = xg - iso[0], yg - iso[1]
        margin_u = max(0, round(self.margin_mm / h))
        margin_z = max(0, round(self.margin_mm / sp[2]))
        sig = (self.penumbra_mm / sp[2], self.penumbra_mm / h)
        inv_sq = (self.sad / (self.sad + t.float())) ** 2
        out = torch.zeros((self.sectors, t_count, nz, ny, nx), dtype=torch.float32)
        sx, sy = max(float(xs[-1]), 1e-6), max(float(ys[-1]), 1e-6)
        gantry, weights = beams.weighted_angles(self.arc_step_deg)
        for g, weight in zip(gantry, weights, strict=True):
            deg = (float(g) + 180.0) % 360.0
            theta = np.deg2rad(deg)
            d = np.array([-np.sin(theta), np.cos(theta)])  # beam direction (source -> patient)
            e = np.array([np.cos(theta), np.sin(theta)])  # across the beam
            px = iso[0] + u_grid * e[0] + w_grid * d[0]
            py = iso[1] + u_grid * e[1] + w_grid * d[1]
            g = torch.stack([2 * px / sx - 1, 2 * py / sy - 1], dim=-1).float()[None].expand(nz, -1, -1, -1)
            rot = F.grid_sample(vol, g, mode="bilinear", padding_mode="zeros", align_corners=True)
            depth = torch.cumsum(rot[:, 0], dim=1) * h  # radiological depth along the beam, mm
            proj = rot[:, 1 : 1 + t_count].amax(dim=2)  # (Z, T, n_u)
            proj = F.max_pool2d(
                proj.permute(1, 0, 2)[None],
                (2 * margin_z + 1, 2 * margin_u + 1),
                stride=1,
                padding=(margin_z, margin_u),
            )[0]  # (T, Z, n_u)
            apert = _blur((proj > 0.5).float(), sig)
            att = torch.exp(-self.mu * depth) * (1 - 0.6 * torch.exp(-depth / 8.0))
            att = att * inv_sq[None, :, None] * (rot[:, -1] > 0.5)  # (Z, n_w, n_u)
            frame = apert.permute(1, 0, 2)[:, :, None, :] * att[:, None]  # (Z, T, n_w, n_u)
            uu, ww = dx * e[0] + dy * e[1], dx * d[0] + dy * d[1]
            bg = torch.stack([uu / half, ww / half], dim=-1).float()[None].expand(nz, -1, -1, -1)
            back = F.grid_sample(frame, bg, mode="bilinear", padding_mode="zeros", align_corners=True)
            out[self._sector(deg)] += float(weight) * back.permute(1, 0, 2, 3)
        primary = out.permute(0, 1, 4, 3, 2) * body  # (S, T, X, Y, Z)
        sigmas = [self.scatter_sigma_mm / s for s in sp]
        flat = primary.reshape(-1, nx, ny, nz)
        return ((flat + self.scatter_fraction * _blur(flat, sigmas)) * body).reshape(primary.shape)

    def _sector(self, deg: float) -> int:
        """Output channel of gantry angle ``deg``: 0 (one sector) or anterior 0, posterior 1, lateral 2."""
        if self.sectors == 1:
            return 0
        if 135.0 < deg < 225.0:
            return 0
        return 1 if (deg > 315.0 or deg < 45.0) else 2  # the boundary angles are lateral (mirror symmetry)

    def _weights(self, comps: torch.Tensor, targets: torch.Tensor, present: list[int]) -> np.ndarray:
        """Non-negative arc weights whose target medians best match the levels (relative)."""
        levels = self.levels[present]
        order = np.argsort(-levels)
        a = np.zeros((len(present), len(present)))
        covered = torch.zeros_like(targets[0])
        for row in order:  # each target's own region: minus the higher-dose targets
            region = targets[row] & ~covered
            region = region if region.any() else targets[row]
            a[row] = [float(c[region].median()) for c in comps]
            covered |= targets[row]
        try:
            w, _ = optimize.nnls(a, levels / levels.max())
        except (RuntimeError, ValueError):
            w = np.zeros(len(present))
        return w if w.sum() > 0 else levels / levels.max()
