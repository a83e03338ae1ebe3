#!/usr/bin/env python
"""Benchmark suite: measures the pipeline's speed on this machine and writes a markdown table.

Usage::

    .venv/bin/python scripts/benchmark.py                 # every benchmark
    .venv/bin/python scripts/benchmark.py --only synth    # one of them
    .venv/bin/python scripts/benchmark.py --out docs/BENCHMARKS.md

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
from collections.abc import Callable
from pathlib import Path

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


BENCHMARKS: dict[str, Callable[[], list[Row]]] = {
    "synth": bench_synth,
    "convert": bench_convert,
    "sdf": bench_sdf,
    "patches": bench_patches,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    p.add_argument("--out", type=Path, help="write the markdown table to this file")
    args = p.parse_args(argv)
    rows: list[Row] = []
    for name in args.only or list(BENCHMARKS):
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
