"""Walking a user's folder tree: symbolic links to folders are followed (a cohort is often
assembled from links), each real folder is visited once (a link back to a parent cannot loop),
hidden files are skipped."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["walk_files"]


def walk_files(root: str | Path, keep: Callable[[Path], bool] | None = None) -> list[Path]:
    """Every regular file below ``root`` (sorted; paths as reached from ``root``, links not resolved).

    A folder reached twice (a link loop, or two links to one folder) is walked once, under the
    first path that reaches it; broken links and hidden files (``.name``) are skipped.

    Args:
        root: the folder to walk.
        keep: optional filter on each file's path.
    """
    seen: set[str] = set()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file() and (keep is None or keep(p)):
                files.append(p)
    return sorted(files)
