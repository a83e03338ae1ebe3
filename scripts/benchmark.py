#!/usr/bin/env python
"""Benchmark suite: measures the pipeline's speed on this machine and writes a markdown table.

Usage::

    .venv/bin/python scripts/benchmark.py                 # every benchmark but accuracy
    .venv/bin/python scripts/benchmark.py --only accuracy # 20 min of CPU training, then held-out metrics
    .venv/bin/python scripts/benchmark.py --only synth    # one of them
    .venv/bin/python scripts/benchmark.py --only openkbp --minutes 30   # OpenKBP scores after 30 min
    .venv/bin/python scripts/benchmark.py --out docs/BENCHMARKS.md

Each benchmark returns rows (name, value, unit, note). The machine description (CPU, cores,
memory, versions) heads the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

Row = tuple[str, float, str, str]


def machine() -> str:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {cores} cores{mem}; Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"torch {torch.__version__} ({'CUDA' if torch.cuda.is_available() else 'CPU'})"
    )


def bench_synth(n: int = 3) -> list[Row]:
    """Seconds per default-size synthetic case (CT 256×256×80, dose model with 36 angles)."""
    from vmat_monai.data.synthetic.cohort import CohortSettings, generate_case

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            generate_case(i, 0, tmp, CohortSettings())
            times.append(time.perf_counter() - t0)
    return [("synthetic case generation (default size)", statistics.median(times), "s/case", f"median of {n}")]


def bench_convert(n: int = 3) -> list[Row]:
    """Seconds per default-size case for DICOM-RT -> case folder (1 worker)."""
    from vmat_monai.data.convert import convert_tree
    from vmat_monai.data.synthetic.cohort import CohortSettings, generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(Path(tmp) / "dicom", n, seed=0, settings=CohortSettings(), workers=1)
        summary = convert_tree(Path(tmp) / "dicom", Path(tmp) / "data")
    return [
        ("conversion DICOM-RT -> case folder (default size)", summary["seconds"] / n, "s/case", f"{n} cases, 1 worker")
    ]


def _phantom_masks(shape: tuple[int, int, int] = (128, 192, 192)):
    import numpy as np

    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    balls = [
        (64, 96, 96, 15),
        (64, 96, 96, 20),
        (64, 96, 96, 10),
        (64, 120, 96, 12),
        (80, 80, 96, 25),
        (64, 96, 40, 15),
        (64, 96, 150, 15),
    ]
    masks = np.zeros((8, *shape), bool)
    for k, (cz, cy, cx, r) in enumerate(balls):
        masks[k] = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r
    masks[7] = (z > 70) & (y < 100)  # a large bowel bag
    return masks


def bench_sdf() -> list[Row]:
    """Signed distances of 8 channels on 128×192×192 at 2.5 mm: ours vs two full-image scipy EDTs."""
    from scipy import ndimage

    from vmat_monai.transforms import SignedDistance

    masks = _phantom_masks()
    sp = (2.5, 2.5, 2.5)
    t0 = time.perf_counter()
    SignedDistance(margin_mm=50.0, spacing=sp)(masks)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in masks:
        ndimage.distance_transform_edt(~m, sampling=sp)
        ndimage.distance_transform_edt(m, sampling=sp)
    naive = time.perf_counter() - t0
    return [
        ("SignedDistance, 8 channels, 128×192×192", ours, "s", "margin 50 mm, per-structure boxes"),
        ("naive scipy EDT ×2 per channel, same masks", naive, "s", "reference"),
    ]


def bench_patches(n_draws: int = 20) -> list[Row]:
    """Patches/s from a warm CacheDataset (3 default synthetic cases), 64³ and 128³, vs a UNet step."""
    import torch
    from monai.networks.nets import UNet

    from vmat_monai.data.convert import convert_tree
    from vmat_monai.data.datasets import make_dataset, preset_kwargs
    from vmat_monai.data.synthetic.cohort import CohortSettings, generate_cohort
    from vmat_monai.transforms import train_transforms

    rows: list[Row] = []
    kw = preset_kwargs()
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(Path(tmp) / "dicom", 3, seed=0, settings=CohortSettings(), workers=1)
        convert_tree(Path(tmp) / "dicom", Path(tmp) / "data")
        per_patch = {}
        for size in (64, 128):
            t = train_transforms(kw["target_channels"], kw["mirror_pairs"], patch_size=(size,) * 3, num_samples=4)
            ds = make_dataset(Path(tmp) / "data" / "datalist.json", "training", t, cache="memory")
            t0 = time.perf_counter()
            n = 0
            for i in range(n_draws):
                n += len(ds[i % len(ds)])
            dt = time.perf_counter() - t0
            per_patch[size] = dt / n
            rows.append(
                (f"cached patch sampling {size}³ (4 per volume, with flips)", n / dt, "patches/s", f"{n} patches")
            )
    net = UNet(3, 9, 1, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    x, y = torch.randn(2, 9, 64, 64, 64), torch.rand(2, 1, 64, 64, 64)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.l1_loss(net(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:])
    n_params = sum(p.numel() for p in net.parameters()) / 1e6
    rows.append(
        (f"MONAI UNet step, batch 2 × 64³ ({n_params:.1f} M parameters)", step, "s/step", "median of 2 after warm-up")
    )
    rows.append(
        ("data pipeline share of a 64³ step (2 patches)", 100 * 2 * per_patch[64] / step, "%", "single process")
    )
    return rows


_STEP_CODE = """
import resource, sys, time, torch
from vmat_monai.networks import ConditionedUNet, cpu_conditioned_unet
variant, size = sys.argv[1], int(sys.argv[2])
# 10 input channels: CT, 8 signed distances, arc dose prior
net = ConditionedUNet(in_channels=10) if variant == "default" else cpu_conditioned_unet(10)
opt = torch.optim.AdamW(net.parameters(), 2e-4)
x, c, y = torch.randn(1, 10, size, size, size), torch.rand(1, 13), torch.rand(1, 1, size, size, size)
times = []
for _ in range(2):
    t0 = time.perf_counter()
    opt.zero_grad()
    torch.nn.functional.l1_loss(net(x, c), y).backward()
    opt.step()
    times.append(time.perf_counter() - t0)
print(times[-1], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
"""

_INFER_CODE = """
import resource, sys, time, torch
from monai.inferers import SlidingWindowInferer
from vmat_monai.networks import ConditionedUNet, cpu_conditioned_unet
variant, roi = sys.argv[1], int(sys.argv[2])
shape = tuple(int(v) for v in sys.argv[3:6])
net = (ConditionedUNet(in_channels=10) if variant == "default" else cpu_conditioned_unet(10)).eval()
x, c = torch.randn(1, 10, *shape), torch.rand(1, 13)
inferer = SlidingWindowInferer((roi,) * 3, sw_batch_size=1, overlap=0.25, mode="gaussian")
with torch.no_grad():
    t0 = time.perf_counter()
    inferer(x, lambda p: net(p, c.expand(p.shape[0], -1)))
    dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
"""


def _subprocess(code: str, *args: str) -> tuple[float, float]:
    import subprocess

    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    seconds, peak_gb = (float(v) for v in out.split()[-2:])
    return seconds, peak_gb


def bench_training() -> list[Row]:
    """Seconds per training step (batch 1, AdamW) for both variants at 64³ and 128³, in subprocesses."""
    rows: list[Row] = []
    for variant in ("cpu", "default"):
        for size in (64, 128):
            seconds, peak = _subprocess(_STEP_CODE, variant, str(size))
            rows.append(
                (f"training step, {variant} network, 1 × {size}³", seconds, "s/step", f"peak RSS {peak:.1f} GiB")
            )
    return rows


def bench_inference() -> list[Row]:
    """Full-volume sliding-window inference on a default synthetic case resampled to 2.5 mm."""
    shape = ("164", "112", "96")  # 410 × 280 × 240 mm: a default case's body at 2.5 mm
    rows: list[Row] = []
    for variant, roi in (("cpu", "64"), ("cpu", "128"), ("default", "128")):
        seconds, peak = _subprocess(_INFER_CODE, variant, roi, *shape)
        rows.append(
            (
                f"full-volume inference, {variant} network, roi {roi}³",
                seconds,
                "s/case",
                f"{'×'.join(shape)} voxels, overlap 0.25, peak RSS {peak:.1f} GiB",
            )
        )
    return rows


def bench_accuracy(minutes: float = 20.0, epochs: int = 70) -> list[Row]:
    """Train the CPU configuration for a fixed wall-clock budget, then evaluate held-out cases.

    Needs the main job's data (runs/default/data). Trains through the bundle (cpu.json, 64³
    patches) for ``minutes``, predicts the validation and test cases (never trained on) with
    last.ckpt, and reports MAE in the body and PTV70 D95 error against the plan dose, Gy.
    """
    import subprocess

    import nibabel as nib
    import numpy as np

    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.engine.bundle import predictor_from_bundle
    from vmat_monai.structures import PROSTATE_SIB

    root = Path(__file__).resolve().parent.parent
    datalist = root / "runs" / "default" / "data" / "datalist.json"
    if not datalist.exists():
        raise SystemExit(f"{datalist} not found: run `python3 scripts/bootstrap.py main` first")
    configs = root / "bundles" / "vmat_dose_unet" / "configs"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        hh, mm = divmod(int(minutes), 60)
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "monai.bundle",
                "run",
                "training",
                "--config_file",
                f"['{configs / 'train.json'}','{configs / 'cpu.json'}']",
                "--datalist",
                str(datalist),
                "--output_dir",
                tmp,
                "--epochs",
                str(epochs),
                "--max_time",
                f"00:{hh:02d}:{mm:02d}:00",
            ],
            check=True,
            cwd=root,
        )
        train_minutes = (time.perf_counter() - t0) / 60
        predictor = predictor_from_bundle(Path(tmp) / "checkpoints" / "last.ckpt", "cpu", device="cpu")
        items = load_datalist(datalist, "validation") + load_datalist(datalist, "test")
        maes, d95s = [], []
        for item in items:
            pred, _ = predictor.predict_item(item)
            true = np.asarray(nib.load(item["dose"]).dataobj)
            body = np.asarray(nib.load(item["body"]).dataobj) > 0
            ptv = np.asarray(nib.load(item["masks"]).dataobj)[..., PROSTATE_SIB.index("PTV70")] > 0
            maes.append(float(np.abs(pred - true)[body].mean()))
            d95s.append(float(np.percentile(pred[ptv], 5) - np.percentile(true[ptv], 5)))
        csv_metrics = sorted(Path(tmp).glob("csv/version_*/metrics.csv"))[-1].read_text().splitlines()
        n_epochs = len({line.split(",")[0] for line in csv_metrics[1:]})
    note = (
        f"{len(items)} held-out cases; CPU training capped at {minutes:g} min / {epochs} epochs: "
        f"ran {train_minutes:.1f} min, {n_epochs} epochs"
    )
    rows.append(
        (
            "MAE in the body after the CPU budget",
            float(np.mean(maes)),
            "Gy",
            note + f"; per case {json.dumps([round(m, 2) for m in maes])}",
        )
    )
    rows.append(
        (
            "|PTV70 D95 error| after the CPU budget",
            float(np.mean(np.abs(d95s))),
            "Gy",
            f"signed per case {json.dumps([round(d, 2) for d in d95s])}",
        )
    )
    return rows


def _gamma_pair(shape: tuple[int, int, int], spacing: float = 2.5, seed: int = 0):
    """A plan-like SIB dose (70/56 Gy plateaus, low-dose bath, zero outside an elliptical body) and
    a perturbed copy (0.6/0.5/0.4 mm shift, +2 %, smooth noise), a pair with a realistic pass rate."""
    import numpy as np
    from scipy import ndimage

    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2) * spacing for n in shape], indexing="ij")
    r70 = np.sqrt((x / 30) ** 2 + (y / 25) ** 2 + (z / 30) ** 2)
    r56 = np.sqrt((x / 45) ** 2 + (y / 40) ** 2 + (z / 50) ** 2)
    body = np.sqrt((x / 180) ** 2 + (y / 120) ** 2) < 1
    ref = 70 / (1 + np.exp((r70 - 1) / 0.08)) + 14 / (1 + np.exp((r56 - 1) / 0.1)) * (r70 > 0.9)
    ref = (ref + 12 * np.exp(-((x / 140) ** 2 + (y / 100) ** 2 + (z / 120) ** 2))) * body
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0, 30, shape), 2.0) * body
    ev = ndimage.shift(ref, (0.6 / spacing, 0.5 / spacing, -0.4 / spacing), order=1) * 1.02 + noise
    return ref, np.clip(ev, 0, None)


def bench_gamma() -> list[Row]:
    """Fast gamma vs pymedphys on a full 100 × 160 × 160 volume at 2.5 mm, identical settings, no subsampling."""
    import numpy as np

    from vmat_monai.metrics.gamma import GammaOptions, gamma, gamma_pymedphys, pass_rate

    shape = (100, 160, 160)
    ref, ev = _gamma_pair(shape)
    axes = [np.arange(n) * 2.5 for n in shape]
    opts = GammaOptions()  # global 3 %/3 mm, 10 % cutoff, interp_fraction 10, max_gamma 2
    small = [a[:8] for a in axes]
    gamma(small, ref[:8, :8, :8], small, ev[:8, :8, :8], opts)  # numba compile, not timed
    t0 = time.perf_counter()
    fast = gamma(axes, ref, axes, ev, opts)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = gamma_pymedphys(axes, ref, axes, ev, opts)
    t_slow = time.perf_counter() - t0
    ok = ~np.isnan(slow)
    n = int(ok.sum())
    setting = f"{'×'.join(map(str, shape))} at 2.5 mm, {n} voxels above the 10 % cutoff, global 3 %/3 mm"
    return [
        ("gamma, vmat_monai (numba)", t_fast, "s", f"{setting}, pass rate {pass_rate(fast):.2f} %"),
        ("gamma, pymedphys (reference)", t_slow, "s", f"same pair and settings, pass rate {pass_rate(slow):.2f} %"),
        ("gamma speed-up over pymedphys", t_slow / t_fast, "×", "same pair, full volume"),
        (
            "gamma agreement with pymedphys",
            abs(pass_rate(fast) - pass_rate(slow)),
            "pct. points",
            f"largest voxel difference in gamma {np.nanmax(np.abs(fast - slow)):.1e}",
        ),
    ]


def bench_ceiling() -> list[Row]:
    """How well the synthetic plan dose can be predicted at all: the same anatomy and goals planned
    twice with different random streams of the dose model (the optimiser's voxel sample). A model
    cannot beat this agreement; it is the data's own ceiling for MAE and gamma."""
    import numpy as np

    from vmat_monai.data.synthetic.cohort import CohortSettings, plan_inputs
    from vmat_monai.data.synthetic.dose_model import ArcModel, compute_plan_dose
    from vmat_monai.metrics.gamma import GammaOptions, gamma, pass_rate

    settings = CohortSettings()
    maes, rates, grid_maes, grid_rates = [], [], [], []
    for index in (1, 2, 3, 4):
        density, masks, grid, goals = plan_inputs(index, 0, settings)
        a, b = (
            compute_plan_dose(density, masks, grid, goals, np.random.default_rng([0, index, r]), ArcModel()).dose_gy
            for r in (7, 8)
        )
        axes = [np.arange(n) * sp for n, sp in zip(a.shape, grid.spacing[::-1], strict=True)]
        maes.append(float(np.abs(a - b)[masks["BODY"]].mean()))
        rates.append(pass_rate(gamma(axes, a, axes, b, GammaOptions())))
        c = _through_training_grid(a, grid.spacing[::-1]) * masks["BODY"]
        grid_maes.append(float(np.abs(a - c)[masks["BODY"]].mean()))
        grid_rates.append(pass_rate(gamma(axes, a, axes, c, GammaOptions())))
    note = "4 default-size anatomies, each planned twice (random streams 7 and 8), body; global 3 %/3 mm, 10 % cutoff"
    grid_note = "the same plans resampled to the CPU config's 5 mm grid and back (bilinear, as the network sees them)"
    return [
        ("plan-to-plan MAE, same inputs", float(np.mean(maes)), "Gy", f"{note}; per case {_fmt(maes)}"),
        ("plan-to-plan gamma, same inputs", float(np.mean(rates)), "%", f"per case {_fmt(rates)}"),
        ("5 mm round trip MAE", float(np.mean(grid_maes)), "Gy", f"{grid_note}; per case {_fmt(grid_maes)}"),
        ("5 mm round trip gamma", float(np.mean(grid_rates)), "%", f"per case {_fmt(grid_rates)}"),
    ]


def _through_training_grid(dose: np.ndarray, spacing_mm: Sequence[float], pixdim_mm: float = 5.0) -> np.ndarray:
    """``dose`` (array, its voxel size in mm per axis) resampled to ``pixdim_mm`` and back with MONAI's
    Spacing and its inverse, as a prediction on the training grid returns to the CT grid."""
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    img = MetaTensor(
        torch.as_tensor(dose, dtype=torch.float32)[None], affine=torch.diag(torch.tensor([*spacing_mm, 1.0]))
    )
    spacing = Spacing(pixdim=(pixdim_mm,) * 3, mode="bilinear")
    back = spacing.inverse(spacing(img))
    return np.clip(np.asarray(back[0], dtype=np.float64), 0, None)


def bench_prior() -> list[Row]:
    """The arc dose prior (72 angles on a 5 mm grid) of a default-size pelvis at 2.5 mm, one case."""
    import numpy as np
    import torch
    from monai.data import MetaTensor

    from vmat_monai.transforms import ArcDosePrior

    shape, sp = (164, 112, 96), 2.5  # 410 × 280 × 240 mm: a default case's body
    x, y, z = np.meshgrid(*[(np.arange(n) - n / 2) * sp for n in shape], indexing="ij")
    body = (x / 190) ** 2 + (y / 120) ** 2 <= 1
    ct = np.where(body, 40.0, -1000.0)[None]
    ptv70 = (x / 30) ** 2 + (y / 25) ** 2 + (z / 30) ** 2 <= 1
    ptv56 = (x / 45) ** 2 + (y / 40) ** 2 + (z / 50) ** 2 <= 1
    affine = torch.diag(torch.tensor([sp, sp, sp, 1.0], dtype=torch.float64))

    def meta(a: np.ndarray) -> MetaTensor:
        return MetaTensor(torch.from_numpy(np.asarray(a, np.float32)), affine=affine)

    prior = ArcDosePrior([0, 1], [70.0, 56.0])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        prior(meta(ct), meta(np.stack([ptv70, ptv56])), meta(body[None]))
        times.append(time.perf_counter() - t0)
    note = f"{'×'.join(map(str, shape))} voxels, 2 targets, median of 3; cached with the volume in training"
    return [("arc dose prior, one case", statistics.median(times), "s", note)]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


OPTIONS: dict[str, object] = {"minutes": 30.0, "openkbp_root": None, "variant": None}


def bench_openkbp() -> list[Row]:
    """OpenKBP: train the CPU configuration on the training patients for a time budget, predict the
    validation patients, and score them with the challenge's dose and DVH scores.

    Data: ``--openkbp-root`` (a checkout's provided-data folder with train-pats/ and
    validation-pats/; default ../shared/data/openkbp beside the repository). Everything is
    written to runs/openkbp/ (conversion and a finished training are reused).
    """
    import nibabel as nib
    import numpy as np

    from vmat_monai.data.convert import ConvertOptions, convert_tree
    from vmat_monai.data.datasets import load_datalist
    from vmat_monai.engine.bundle import predictor_from_bundle
    from vmat_monai.metrics.openkbp import dose_score, dvh_metrics, dvh_score
    from vmat_monai.pipeline import train_bounded
    from vmat_monai.structures import OPENKBP_HN

    root = Path(__file__).resolve().parent.parent
    src = Path(str(OPTIONS["openkbp_root"] or root.parent / "shared" / "data" / "openkbp"))
    if not src.is_dir():
        raise SystemExit(f"{src} not found: pass --openkbp-root PATH (the folder holding train-pats/)")
    work = root / "runs" / "openkbp"
    opts = ConvertOptions(structure_set="openkbp_hn", source_format="openkbp")
    t0 = time.perf_counter()
    conv = convert_tree(src, work / "data", opts, workers=2)
    convert_s = time.perf_counter() - t0
    datalist = work / "data" / "datalist.json"
    minutes = float(OPTIONS["minutes"])  # type: ignore[arg-type]
    lever = str(OPTIONS["variant"] or "")
    variant = ",".join(["cpu", "openkbp", *([lever] if lever else [])])
    tag = "-" + "+".join(Path(v.strip()).stem for v in lever.split(",")) if lever else ""
    ckpt = train_bounded(datalist, work / f"model{tag}", minutes, variant)
    predictor = predictor_from_bundle(ckpt, variant, openkbp_submission=True)
    items = load_datalist(datalist, "test")
    pred_dir = work / f"predictions{tag}"
    t0 = time.perf_counter()
    predictor.predict_items(items, pred_dir)
    predict_s = (time.perf_counter() - t0) / max(len(items), 1)
    scores, pred_m, ref_m = [], [], []
    targets = list(OPENKBP_HN.targets)
    for it in items:
        pred = np.asarray(nib.load(str(pred_dir / it["case_id"] / "dose_pred.nii.gz")).dataobj)
        ref = np.asarray(nib.load(it["dose"]).dataobj)
        pdm = np.asarray(nib.load(it["body"]).dataobj) > 0
        m = np.asarray(nib.load(it["masks"]).dataobj) > 0
        masks = {name: m[..., i] for i, name in enumerate(OPENKBP_HN.channels)}
        vox = nib.load(it["dose"]).header.get_zooms()[:3]
        scores.append(dose_score(pred, ref, pdm))
        pred_m.append(dvh_metrics(pred, masks, vox, targets))
        ref_m.append(dvh_metrics(ref, masks, vox, targets))
    record = json.loads((work / f"model{tag}" / "training.json").read_text())
    split = conv["split"]
    note = (
        f"configs {variant}, trained on {split['training']} "
        f"patients ({split['validation']} for validation) for {minutes:g} min ({record['summary']}); "
        f"{len(items)} validation patients"
    )
    board = "leaderboard (test phase): 1st 2.429 / 1.478, 2nd 2.564 / 1.705, 3rd 2.615 / 1.582"
    return [
        (
            "OpenKBP conversion",
            convert_s / max(conv["converted"], 1) if conv["converted"] else float("nan"),
            "s/patient",
            f"{conv['converted']} converted, {conv['skipped']} reused of {conv['n_studies']} patients, 2 workers",
        ),
        ("OpenKBP dose score", float(np.mean(scores)), "Gy", note),
        ("OpenKBP DVH score", dvh_score(pred_m, ref_m), "Gy", board),
        ("OpenKBP prediction", predict_s, "s/patient", "sliding window (config patch size), + submission CSV"),
    ]


BENCHMARKS: dict[str, Callable[[], list[Row]]] = {
    "accuracy": bench_accuracy,
    "training": bench_training,
    "inference": bench_inference,
    "synth": bench_synth,
    "convert": bench_convert,
    "sdf": bench_sdf,
    "prior": bench_prior,
    "patches": bench_patches,
    "gamma": bench_gamma,
    "ceiling": bench_ceiling,
    "openkbp": bench_openkbp,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    p.add_argument("--out", type=Path, help="write the markdown table to this file")
    p.add_argument("--minutes", type=float, default=30.0, help="training budget of --only openkbp, minutes")
    p.add_argument("--openkbp-root", type=Path, default=None, help="OpenKBP provided-data folder (train-pats/...)")
    p.add_argument(
        "--variant",
        default=None,
        help="--only openkbp: more bundle configs (names or JSON paths, comma-separated) on top of cpu,openkbp "
        "(lever study; model and predictions go to runs/openkbp/model-<stems>)",
    )
    args = p.parse_args(argv)
    OPTIONS.update(minutes=args.minutes, openkbp_root=args.openkbp_root, variant=args.variant)
    rows: list[Row] = []
    for name in args.only or [b for b in BENCHMARKS if b not in ("accuracy", "openkbp")]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += BENCHMARKS[name]()
    lines = [
        f"Machine: {machine()}",
        "",
        "| benchmark | value | unit | note |",
        "|---|---|---|---|",
        *[f"| {n} | {v:.3g} | {u} | {note} |" for n, v, u, note in rows],
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
