#!/usr/bin/env python3
"""Create the project's virtual environment in ``.venv`` (if missing) and run a job in it.

Usage (from the repository root, with only Python 3.10–3.12 installed)::

    python3 scripts/bootstrap.py demo   # set up .venv, run the synthetic end-to-end demo
    python3 scripts/bootstrap.py test   # set up .venv, run ruff and the test suite

Extra arguments after the job name are passed on (to ``vmat-monai demo`` or to ``pytest``);
``main`` is the demo's old name.
The environment is rebuilt when ``pyproject.toml`` or the constraints file change, or when a
previous install was interrupted. On CPython 3.11 the exact tested versions in
``constraints/py311.txt`` are installed; on other versions the ranges of ``pyproject.toml``.
This file only uses the standard library.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
MARKER = VENV / ".vmat-monai-install"
CONSTRAINTS = ROOT / "constraints" / f"py{sys.version_info.major}{sys.version_info.minor}.txt"
# The CPU wheel of torch; a bare "torch" requirement would pull a multi-GB CUDA build.
TORCH_CPU = "torch==2.13.0"


def _python() -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return VENV / sub / ("python.exe" if os.name == "nt" else "python")


def _fingerprint() -> str:
    h = hashlib.sha256()
    for f in (ROOT / "pyproject.toml", CONSTRAINTS):
        if f.exists():
            h.update(f.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def ensure_env() -> Path:
    """Create or refresh ``.venv`` and install the package with its test extras."""
    if not (3, 10) <= sys.version_info[:2] <= (3, 12):
        sys.exit(f"vmat-monai needs Python 3.10-3.12, this is {sys.version.split()[0]}")
    py = _python()
    fp = _fingerprint()
    if py.exists() and MARKER.exists() and MARKER.read_text().strip() == fp:
        return py
    if not py.exists():
        print(f"Creating virtual environment in {VENV.name}/ ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    constraint = ["-c", str(CONSTRAINTS)] if CONSTRAINTS.exists() else []
    _run([*pip, *constraint, TORCH_CPU])
    _run([*pip, *constraint, "-e", ".[dev]"])
    MARKER.write_text(fp + "\n")
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "main", "test"}:
        print(__doc__)
        return 2
    py = ensure_env()
    job, rest = argv[0], argv[1:]
    if job in ("demo", "main"):
        cmd = [str(py), "-m", "vmat_monai.cli", "demo", *rest]
    else:
        lint = subprocess.run([str(py), "-m", "ruff", "check", "."], cwd=ROOT)
        if lint.returncode != 0:
            return lint.returncode
        cmd = [str(py), "-m", "pytest", *rest]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
