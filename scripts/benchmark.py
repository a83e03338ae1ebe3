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


BENCHMARKS: dict[str, Callable[[], list[Row]]] = {"synth": bench_synth, "convert": bench_convert}


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
