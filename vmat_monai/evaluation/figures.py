"""Figures of one case: dose slices with isodoses and contours, DVHs, gamma map, a summary page.

Arrays are (x, y, z) as stored in the RAS NIfTI files of a case folder converted from DICOM
(x index towards the patient's left, y index towards posterior, z index towards the head).
Slices are shown in radiological convention: axial with anterior up and the patient's right
on the left; coronal and sagittal with the head up. Colours are colour-blind safe (Okabe-Ito
for structures, viridis for dose, blue-red for differences, purple-orange around gamma 1).
Every figure is saved as a 300 DPI PNG and a PDF, each written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from vmat_monai.atomic import atomic_file
from vmat_monai.metrics.dvh import DVH

__all__ = [
    "OKABE_ITO",
    "centre_of",
    "dose_slices_figure",
    "draw_slice",
    "dvh_figure",
    "gamma_figure",
    "save_figure",
    "summary_figure",
]

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
ISODOSE_FRACTIONS = (0.3, 0.5, 0.8, 0.95, 1.0, 1.05)
VIEWS = ("axial", "coronal", "sagittal")
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.titlesize": 12, "font.family": "DejaVu Sans"})


def _slice(arr: np.ndarray, view: str, centre: Sequence[int]) -> np.ndarray:
    """2D image (rows top -> bottom) of a (x, y, z) array through ``centre``."""
    i, j, k = centre
    if view == "axial":
        return arr[:, :, k].T  # rows: y (anterior first), cols: x (patient right first)
    if view == "coronal":
        return arr[:, j, :].T[::-1]  # rows: z (head first), cols: x
    return arr[i, :, :].T[::-1]  # sagittal: rows: z, cols: y (anterior first)


def _extent(shape: Sequence[int], spacing: Sequence[float], view: str) -> tuple[float, float, float, float]:
    nx, ny, nz = shape
    sx, sy, sz = spacing
    w, h = {"axial": (nx * sx, ny * sy), "coronal": (nx * sx, nz * sz), "sagittal": (ny * sy, nz * sz)}[view]
    return (0.0, w, h, 0.0)


def centre_of(mask: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    """Voxel at the centre of mass of ``mask`` (the volume centre if empty)."""
    if mask is None or not mask.any():
        return tuple(int(n // 2) for n in shape)  # type: ignore[return-value]
    return tuple(int(np.rint(c)) for c in np.argwhere(mask).mean(axis=0))  # type: ignore[return-value]


def _contour(ax: plt.Axes, img: np.ndarray, ext: Sequence[float], **kwargs: object) -> None:
    """Contour lines of a 2D image shown with ``imshow(extent=ext)`` (top-left origin), at pixel centres."""
    rows, cols = img.shape
    x = (np.arange(cols) + 0.5) * (ext[1] - ext[0]) / cols + ext[0]
    y = (np.arange(rows) + 0.5) * (ext[2] - ext[3]) / rows + ext[3]
    ax.contour(x, y, img, **kwargs)


def draw_slice(
    ax: plt.Axes,
    ct: np.ndarray,
    overlay: np.ndarray | None,
    masks: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    view: str,
    centre: Sequence[int],
    *,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    isodose_gy: Sequence[float] = (),
    alpha: float = 0.55,
) -> matplotlib.image.AxesImage | None:
    ext = _extent(ct.shape, spacing, view)
    ax.imshow(_slice(ct, view, centre), cmap="gray", vmin=-300, vmax=500, extent=ext, interpolation="nearest")
    im = None
    if overlay is not None:
        img = _slice(overlay, view, centre)
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, extent=ext, interpolation="bilinear")
        if isodose_gy:
            levels = [lv for lv in isodose_gy if img.min() < lv < img.max()]
            if levels:
                _contour(ax, np.ma.getdata(img), ext, levels=levels, colors="white", linewidths=0.6, linestyles="--")
    for c, m in enumerate(masks.values()):
        s = _slice(m.astype(np.float32), view, centre)
        if s.max() > 0:
            _contour(ax, s, ext, levels=[0.5], colors=[OKABE_ITO[c % len(OKABE_ITO)]], linewidths=0.9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _washes(plan: np.ndarray, pred: np.ndarray, rx: float, floor: float = 0.05) -> tuple[np.ndarray, ...]:
    """Plan, prediction and difference as masked arrays: no colour where both doses are below ``floor`` · Rx."""
    low = (plan < floor * rx) & (pred < floor * rx)
    return (
        np.ma.masked_where(plan < floor * rx, plan),
        np.ma.masked_where(pred < floor * rx, pred),
        np.ma.masked_where(low, pred - plan),
    )


def _legend(fig: Figure, masks: Mapping[str, np.ndarray], rx: float) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=OKABE_ITO[c % len(OKABE_ITO)], lw=1.5, label=n) for c, n in enumerate(masks)]
    iso = ", ".join(f"{100 * f:g}" for f in ISODOSE_FRACTIONS)
    handles.append(Line2D([], [], color="0.4", lw=0.8, ls="--", label=f"isodoses {iso} % of {rx:g} Gy"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False, fontsize=8)


def dose_slices_figure(
    ct: np.ndarray,
    plan: np.ndarray,
    pred: np.ndarray,
    masks: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    rx: float,
    centre: Sequence[int],
    title: str = "",
) -> Figure:
    """3 × 3 panels: axial/coronal/sagittal × plan, prediction, prediction - plan."""
    fig, axes = plt.subplots(3, 3, figsize=(10, 10.5), layout="constrained")
    plan, pred, diff = _washes(plan, pred, rx)
    vmax = 1.1 * rx
    iso = [f * rx for f in ISODOSE_FRACTIONS]
    lim = max(0.1 * rx, 1.0)
    for r, view in enumerate(VIEWS):
        im_d = draw_slice(axes[r, 0], ct, plan, masks, spacing, view, centre, vmax=vmax, isodose_gy=iso)
        draw_slice(axes[r, 1], ct, pred, masks, spacing, view, centre, vmax=vmax, isodose_gy=iso)
        im_x = draw_slice(axes[r, 2], ct, diff, masks, spacing, view, centre, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r, 0].set_ylabel(view)
    for c, t in enumerate(("plan", "prediction", "prediction - plan")):
        axes[0, c].set_title(t)
    fig.colorbar(im_d, ax=axes[:, :2], location="bottom", shrink=0.5, label="dose (Gy)")
    fig.colorbar(im_x, ax=axes[:, 2], location="bottom", shrink=0.9, label="difference (Gy)")
    _legend(fig, masks, rx)
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    fig.suptitle(title)
    return fig


def dvh_figure(plan: Mapping[str, DVH], pred: Mapping[str, DVH], title: str = "", ax: plt.Axes | None = None) -> Figure:
    """Cumulative DVHs: plan solid, prediction dashed, one colour per structure."""
    own = ax is None
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained") if own else (ax.figure, ax)
    for c, name in enumerate(plan):
        col = OKABE_ITO[c % len(OKABE_ITO)]
        ax.plot(plan[name].dose_gy, plan[name].volume_percent, color=col, lw=1.6, label=name)
        if name in pred:
            ax.plot(pred[name].dose_gy, pred[name].volume_percent, color=col, lw=1.4, ls="--")
    ax.plot([], [], color="0.3", lw=1.6, label="plan (solid)")
    ax.plot([], [], color="0.3", lw=1.4, ls="--", label="prediction (dashed)")
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume (%)")
    ax.set_ylim(0, 102)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def gamma_figure(
    ct: np.ndarray,
    gamma_map: np.ndarray,
    masks: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    centre: Sequence[int],
    title: str = "",
) -> Figure:
    """Gamma on the three views (purple: passing, orange: failing, uncoloured: not evaluated)."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.4), layout="constrained")
    im = None
    for ax, view in zip(axes, VIEWS, strict=True):
        g = np.ma.masked_invalid(gamma_map)
        im = draw_slice(ax, ct, g, masks, spacing, view, centre, cmap="PuOr_r", vmin=0.0, vmax=2.0, alpha=0.7)
        ax.set_title(view)
    fig.colorbar(im, ax=axes, location="right", shrink=0.8, label="gamma")
    fig.suptitle(title)
    return fig


def summary_figure(
    ct: np.ndarray,
    plan: np.ndarray,
    pred: np.ndarray,
    gamma_map: np.ndarray | None,
    masks: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    rx: float,
    centre: Sequence[int],
    dvh_plan: Mapping[str, DVH],
    dvh_pred: Mapping[str, DVH],
    table: Sequence[tuple[str, str]],
    goals: Sequence[tuple[str, str, str]],
    title: str,
) -> Figure:
    """One A4 page: axial plan/prediction/difference/gamma, DVHs, key numbers and the goals table."""
    fig = plt.figure(figsize=(8.27, 11.69), layout="constrained")
    gs = fig.add_gridspec(3, 4, height_ratios=[1.0, 1.3, 1.5])
    iso = [f * rx for f in ISODOSE_FRACTIONS]
    lim = max(0.1 * rx, 1.0)
    plan, pred, diff = _washes(plan, pred, rx)
    panels = [("plan", plan, "viridis", 0, 1.1 * rx), ("prediction", pred, "viridis", 0, 1.1 * rx)]
    panels.append(("difference (Gy)", diff, "RdBu_r", -lim, lim))
    if gamma_map is not None:
        panels.append(("gamma", np.ma.masked_invalid(gamma_map), "PuOr_r", 0, 2))
    for c, (name, arr, cmap, lo, hi) in enumerate(panels):
        ax = fig.add_subplot(gs[0, c])
        im = draw_slice(
            ax, ct, arr, masks, spacing, "axial", centre, cmap=cmap, vmin=lo, vmax=hi, isodose_gy=iso if c < 2 else ()
        )
        ax.set_title(name)
        fig.colorbar(im, ax=ax, location="bottom", shrink=0.9)
    dvh_figure(dvh_plan, dvh_pred, ax=fig.add_subplot(gs[1, :]))
    ax = fig.add_subplot(gs[2, :2])
    ax.axis("off")
    t = ax.table(cellText=[list(r) for r in table], colLabels=["metric", "value"], loc="upper center", cellLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.3)
    ax = fig.add_subplot(gs[2, 2:])
    ax.axis("off")
    if goals:
        t = ax.table(
            cellText=[list(g) for g in goals],
            colLabels=["goal", "plan", "prediction"],
            colWidths=[0.56, 0.22, 0.22],
            loc="upper center",
            cellLoc="left",
        )
        t.auto_set_font_size(False)
        t.set_fontsize(7)
        t.scale(1, 1.25)
    fig.suptitle(title)
    return fig


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 300) -> list[Path]:
    """Save ``fig`` as ``stem.png`` (300 DPI) and ``stem.pdf``, atomically; closes the figure."""
    out = []
    for fmt in formats:
        path = Path(f"{stem}.{fmt}")
        with atomic_file(path) as tmp:
            fig.savefig(str(tmp), dpi=dpi, format=fmt)
        out.append(path)
    plt.close(fig)
    return out
