#!/usr/bin/env python
"""Benchmark suite: measures the pipeline's speed on this machine and writes a markdown table.

Usage::

    .venv/bin/python scripts/benchmark.py                 # every benchmark but accuracy
    .venv/bin/python scripts/benchmark.py --only accuracy # the demo (15 min of CPU training), held-out metrics
    .venv/bin/python scripts/benchmark.py --only synth    # one of them
    .venv/bin/python scripts/benchmark.py --only openkbp --minutes 30   # OpenKBP scores after 30 min
    .venv/bin/python scripts/benchmark.py --out docs/BENCHMARKS.md   # refresh the table there, keep the text

Each benchmark returns rows (name, value, unit, note). The machine description (CPU, cores,
memory, versions) heads the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
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
    from vmat_monai.data.convert_tree import convert_tree
    from vmat_monai.data.synthetic.cohort import CohortSettings
    from vmat_monai.data.synthetic.cohort_runner import generate_cohort

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

    from vmat_monai.data.convert_tree import convert_tree
    from vmat_monai.data.datasets import make_dataset
    from vmat_monai.data.synthetic.cohort import CohortSettings
    from vmat_monai.data.synthetic.cohort_runner import generate_cohort
    from vmat_monai.engine.inputs import model_inputs
    from vmat_monai.transforms import train_transforms

    rows: list[Row] = []
    spec = model_inputs(prior_channels=0)
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(Path(tmp) / "dicom", 3, seed=0, settings=CohortSettings(), workers=1)
        convert_tree(Path(tmp) / "dicom", Path(tmp) / "data")
        per_patch = {}
        for size in (64, 128):
            t = train_transforms(spec.target_channels, spec.mirror_pairs, patch_size=(size,) * 3, num_samples=4)
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


_SAMPLING_CODE = """
import resource, sys, time, torch
from monai.inferers import SlidingWindowInferer
from monai.networks.schedulers import DDIMScheduler
from vmat_monai.engine.diffusion_sampling import DiffusionSampler
from vmat_monai.networks import cpu_conditioned_unet
steps = int(sys.argv[1])
shape = tuple(int(v) for v in sys.argv[2:5])
# the diffusion bundle's cpu.json denoiser: noisy dose + 10 input channels, 13 constraints, roi 64
net = cpu_conditioned_unet(11, out_activation=None, n_time=64).eval()
sampler = DiffusionSampler(DDIMScheduler(1000, schedule="cosine", prediction_type="sample"), steps=steps)
inferer = SlidingWindowInferer((64,) * 3, sw_batch_size=4, overlap=0.25, mode="gaussian")
x, c = torch.randn(1, 10, *shape), torch.rand(1, 13)
t0 = time.perf_counter()
sampler.sample(net, x, c, inferer)
dt = time.perf_counter() - t0
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
"""


def bench_sampling() -> list[Row]:
    """One DDIM sample of a default synthetic case on the CPU configuration's 5 mm grid (the diffusion
    bundle's cpu.json denoiser, roi 64³), for 10, 25 and 50 steps, in subprocesses."""
    shape = ("82", "56", "48")  # 410 × 280 × 240 mm at 5 mm
    rows: list[Row] = []
    for steps in (10, 25, 50):
        seconds, peak = _subprocess(_SAMPLING_CODE, str(steps), *shape)
        rows.append(
            (
                f"diffusion sample, cpu denoiser, {steps} DDIM steps",
                seconds,
                "s/sample",
                f"{'×'.join(shape)} voxels, roi 64³, overlap 0.25, peak RSS {peak:.1f} GiB",
            )
        )
    return rows


_SPEED_CODE = """
import contextlib, resource, sys, time, torch
from vmat_monai.losses import CombinedDoseLoss, DVHLoss, AsymmetricPTVLoss, DoseMAELoss, GradientLoss
from vmat_monai.networks import cpu_conditioned_unet
mode, loss_kind, n_steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
# the OpenKBP CPU configuration: 12 input channels (CT, 10 distances, prior), 10 constraints,
# one volume per step giving 4 patches of 64^3 (num_samples 4)
net = cpu_conditioned_unet(12, n_condition=10)
x, c = torch.randn(4, 12, 64, 64, 64), torch.rand(4, 10)
y, body = torch.rand(4, 1, 64, 64, 64), torch.ones(4, 1, 64, 64, 64)
masks = (torch.rand(4, 10, 64, 64, 64) > 0.9).float()
if loss_kind == "mae":
    loss = DoseMAELoss(body_only=True)
else:
    loss = CombinedDoseLoss(
        {"mae": DoseMAELoss(body_only=True), "gradient": GradientLoss(), "asymmetric_ptv": AsymmetricPTVLoss([0, 1, 2]),
         "dvh": DVHLoss([0, 1, 2], list(range(3, 10)), [70.0, 63.0, 56.0], temperature_gy=1.0)},
        {"mae": 1.0, "gradient": 0.5, "asymmetric_ptv": 0.5, "dvh": 0.1})
cl = mode in ("channels_last", "both")
if cl:
    net = net.to(memory_format=torch.channels_last_3d)
    x = x.contiguous(memory_format=torch.channels_last_3d)
bf16 = mode in ("bf16", "both")
opt = torch.optim.AdamW(net.parameters(), 1e-3)
times = []
for i in range(n_steps):
    t0 = time.perf_counter()
    opt.zero_grad()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        pred = net(x, c)
    total = loss(pred.float(), y, masks=masks, body=body, rx_gy=torch.full((4,), 70.0))
    total.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
timed = times[1:] if len(times) > 1 else times
print(sorted(timed)[len(timed) // 2], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
"""


def bench_speed() -> list[Row]:
    """Training step of the CPU network (OpenKBP configuration) in float32, with channels_last_3d, with
    bf16 autocast (where the processor has no bf16 instructions a step takes about a minute: then one
    step after one warm-up is timed) and with both, and the cost of the combined loss against MAE alone."""
    from vmat_monai.engine.numeric_formats import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    rows: list[Row] = []
    base, _ = _subprocess(_SPEED_CODE, "fp32", "combined", "6")
    note = "median of 5 after a warm-up, combined loss (MAE, gradient, asymmetric PTV, DVH)"
    rows.append(("training step, CPU network, 4 × 64³, float32 (OpenKBP config)", base, "s/step", note))
    for mode, label in (
        ("channels_last", "channels_last_3d"),
        ("bf16", "bf16 autocast"),
        ("both", "bf16 + channels_last_3d"),
    ):
        steps = "6" if mode == "channels_last" or native_bf16 else "2"
        seconds, _ = _subprocess(_SPEED_CODE, mode, "combined", steps)
        what = f"{seconds:.2f} s/step; < 1 is faster" + ("" if steps == "6" else "; no bf16 instructions: 1 step timed")
        rows.append((f"step-time ratio, {label} / float32", seconds / base, "×", what))
    mae, _ = _subprocess(_SPEED_CODE, "fp32", "mae", "6")
    rows.append(("step-time ratio, MAE loss alone / combined loss", mae / base, "×", f"{mae:.2f} s/step; float32"))
    return rows


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


def bench_accuracy(minutes: float = 15.0, workdir: Path = Path("runs/default")) -> list[Row]:
    """The demo (vmat_monai.workflows.demo) with a training budget of ``minutes``: held-out MAE, gamma
    and PTV70 D95 error of the synthetic cohort (a finished demo in ``workdir`` is reused)."""
    from vmat_monai.workflows.demo import DemoOptions, run_demo

    t0 = time.perf_counter()
    result = run_demo(DemoOptions(workdir=workdir, train_minutes=minutes), report=lambda line: None)
    m = result.evaluation["metrics"] if result.evaluation else {}
    note = f"demo, {minutes:g} min of training, {m.get('MAE_body', {}).get('n', 0)} held-out plans"
    rows: list[Row] = [("demo wall time", (time.perf_counter() - t0) / 60, "min", f"{workdir}, reused stages included")]
    for key, name, unit in (
        ("MAE_body", "demo MAE in the body", "Gy"),
        ("gamma_pass_rate", "demo gamma 3%/3mm", "%"),
        ("PTV70_D95_err", "demo PTV70 D95 error", "Gy"),
    ):
        s = m.get(key, {})
        if s.get("n"):
            rows.append((name, float(s["mean"]), unit, f"{note}; sd {s['sd']:.2f}"))
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

    from vmat_monai.transforms import BeamDosePrior

    shape, sp = (164, 112, 96), 2.5  # 410 × 280 × 240 mm: a default case's body
    x, y, z = np.meshgrid(*[(np.arange(n) - n / 2) * sp for n in shape], indexing="ij")
    body = (x / 190) ** 2 + (y / 120) ** 2 <= 1
    ct = np.where(body, 40.0, -1000.0)[None]
    ptv70 = (x / 30) ** 2 + (y / 25) ** 2 + (z / 30) ** 2 <= 1
    ptv56 = (x / 45) ** 2 + (y / 40) ** 2 + (z / 50) ** 2 <= 1
    affine = torch.diag(torch.tensor([sp, sp, sp, 1.0], dtype=torch.float64))

    def meta(a: np.ndarray) -> MetaTensor:
        return MetaTensor(torch.from_numpy(np.asarray(a, np.float32)), affine=affine)

    prior = BeamDosePrior([0, 1], [70.0, 56.0])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        prior(meta(ct), meta(np.stack([ptv70, ptv56])), meta(body[None]))
        times.append(time.perf_counter() - t0)
    note = f"{'×'.join(map(str, shape))} voxels, 2 targets, median of 3; cached with the volume in training"
    return [("arc dose prior, one case", statistics.median(times), "s", note)]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def bench_openkbp(minutes: float = 30.0, data_root: Path | None = None, lever: str = "") -> list[Row]:
    """OpenKBP (vmat_monai.workflows.openkbp): train the CPU configuration on the training patients for
    ``minutes``, predict the validation patients and score them with the challenge's scores.

    Data: ``data_root`` (default ../shared/data/openkbp beside the repository); everything is
    written to runs/openkbp/ (conversion and a finished training are reused).
    """
    from vmat_monai.workflows.openkbp import OpenKBPOptions, run_openkbp

    root = Path(__file__).resolve().parent.parent
    src = data_root or root.parent / "shared" / "data" / "openkbp"
    res = run_openkbp(OpenKBPOptions(data_root=src, workdir=root / "runs" / "openkbp", minutes=minutes, lever=lever))
    conv, split = res.conversion, res.conversion["split"]
    note = (
        f"configs {res.configs}, trained on {split['training']} patients ({split['validation']} for validation) "
        f"for {minutes:g} min ({res.training_summary}); {res.n_patients} validation patients"
    )
    board = "leaderboard (test phase): 1st 2.429 / 1.478, 2nd 2.564 / 1.705, 3rd 2.615 / 1.582"
    return [
        (
            "OpenKBP conversion",
            res.convert_seconds / conv["converted"] if conv["converted"] else float("nan"),
            "s/patient",
            f"{conv['converted']} converted, {conv['skipped']} reused of {conv['n_studies']} patients, 2 workers",
        ),
        ("OpenKBP dose score", res.dose_score, "Gy", note),
        ("OpenKBP DVH score", res.dvh_score, "Gy", board),
        ("OpenKBP prediction", res.predict_seconds_per_patient, "s/patient", "sliding window, + submission CSV"),
    ]


TABLE_START, TABLE_END = "<!-- benchmark table: start -->", "<!-- benchmark table: end -->"


def write_table(path: Path, machine_line: str, rows: list[Row]) -> str:
    """Put the table into ``path`` between the table markers and return the file's text.

    Rows already there under another name are kept (``--only`` refreshes its own rows); text outside
    the markers is never touched; a file without markers gets the table appended."""
    text = path.read_text() if path.exists() else ""
    old_rows: list[str] = []
    if TABLE_START in text and TABLE_END in text:
        before, rest = text.split(TABLE_START, 1)
        old, after = rest.split(TABLE_END, 1)
        old_rows = [line for line in old.splitlines() if line.startswith("| ") and not line.startswith("| benchmark |")]
    else:
        before, after = (text.rstrip() + "\n\n" if text else ""), "\n"
    fresh = {n for n, *_ in rows}
    kept = [line for line in old_rows if line.split(" | ")[0][2:] not in fresh]
    table = "\n".join(
        [
            TABLE_START,
            f"Machine of the latest run: {machine_line}",
            "",
            "| benchmark | value | unit | note |",
            "|---|---|---|---|",
            *kept,
            *[f"| {n} | {v:.3g} | {u} | {note} |" for n, v, u, note in rows],
            TABLE_END,
        ]
    )
    text = before + table + after
    path.write_text(text)
    return text


BENCHMARKS: dict[str, Callable[[], list[Row]]] = {
    "accuracy": bench_accuracy,
    "training": bench_training,
    "speed": bench_speed,
    "inference": bench_inference,
    "sampling": bench_sampling,
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
    p.add_argument("--out", type=Path, help="update the table in this markdown file (e.g. docs/BENCHMARKS.md)")
    p.add_argument("--minutes", type=float, default=None, help="training budget of accuracy / openkbp, minutes")
    p.add_argument("--openkbp-root", type=Path, default=None, help="OpenKBP provided-data folder (train-pats/...)")
    p.add_argument(
        "--lever",
        "--variant",
        dest="lever",
        default="",
        help="--only openkbp: more bundle configs (names or JSON paths, comma-separated) on top of the job's default "
        "configs cpu,openkbp,openkbp_cpu (lever study; model and predictions go to runs/openkbp/model-<stems>)",
    )
    args = p.parse_args(argv)
    minutes = {} if args.minutes is None else {"minutes": args.minutes}
    runners: dict[str, Callable[[], list[Row]]] = {
        **BENCHMARKS,
        "accuracy": partial(bench_accuracy, **minutes),
        "openkbp": partial(bench_openkbp, data_root=args.openkbp_root, lever=args.lever, **minutes),
    }
    rows: list[Row] = []
    for name in args.only or [b for b in BENCHMARKS if b not in ("accuracy", "openkbp")]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += runners[name]()
    lines = [f"Machine: {machine()}", "", "| benchmark | value | unit | note |", "|---|---|---|---|"]
    print("\n".join([*lines, *[f"| {n} | {v:.3g} | {u} | {note} |" for n, v, u, note in rows]]))
    if args.out:
        write_table(args.out, machine(), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
