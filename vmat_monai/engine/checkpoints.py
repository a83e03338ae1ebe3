"""Checkpoints that survive a hard crash: written atomically, checked before a resume.

A training killed while Lightning writes ``last.ckpt`` (SIGKILL, power loss, out of memory) must
not leave a file that looks complete. :class:`AtomicCheckpointIO` writes every checkpoint to a
hidden temporary file beside it, flushes it to disk and renames it over the old one, so a
checkpoint path always holds either the previous or the new complete checkpoint.
:func:`resumable_checkpoint` checks the checkpoint a run resumes from: an unreadable one (e.g.
truncated by a writer without this protection) is set aside as ``*.corrupt-<time>.ckpt`` with a
warning, and the newest readable checkpoint of the same folder is used instead.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from vmat_monai.atomic import atomic_file

__all__ = ["AtomicCheckpointIO", "checkpoint_is_readable", "resumable_checkpoint"]

_TMP_PREFIX = ".tmp-"  # vmat_monai.atomic.atomic_file's temporary names


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with an atomic write (temporary file, fsync, rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``path``; a crash at any moment leaves ``path`` as it was."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_file(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())


def checkpoint_is_readable(path: str | Path) -> bool:
    """True when ``path`` loads as a Lightning checkpoint (holds ``state_dict``); False when it is
    truncated or otherwise unreadable."""
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # truncated zip, bad pickle, I/O error: all mean "cannot resume from it"
        return False
    return isinstance(ckpt, dict) and "state_dict" in ckpt


def resumable_checkpoint(ckpt_path: str | Path | None, ckpt_dir: str | Path | None = None) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` when it is readable, else the newest readable
    checkpoint of its folder (the unreadable one is renamed ``<stem>.corrupt-<time>.ckpt``, with a
    warning), else None (training starts afresh, with a warning).

    Args:
        ckpt_path: the checkpoint asked for; ``"last"`` means ``<ckpt_dir>/last.ckpt``; None: none.
        ckpt_dir: the run's checkpoint folder (for ``"last"``).

    Leftover temporary files of an interrupted atomic write in that folder are removed.
    """
    if ckpt_path is None:
        return None
    path = Path(ckpt_dir or ".") / "last.ckpt" if str(ckpt_path) == "last" else Path(ckpt_path)
    folder = path.parent
    for tmp in folder.glob(f"{_TMP_PREFIX}*.ckpt"):
        tmp.unlink(missing_ok=True)  # a write that never finished; the checkpoint beside it is intact
    if not path.is_file():
        if str(ckpt_path) != "last":
            raise FileNotFoundError(f"checkpoint {path} not found: pass an existing ckpt_path, or none to start afresh")
        return None
    if checkpoint_is_readable(path):
        return str(path)
    aside = path.with_name(f"{path.stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    os.replace(path, aside)
    others = sorted(
        (p for p in folder.glob("*.ckpt") if ".corrupt-" not in p.name), key=lambda p: p.stat().st_mtime, reverse=True
    )
    good = next((p for p in others if checkpoint_is_readable(p)), None)
    then = f"resuming from {good}, the newest readable checkpoint there" if good else "starting afresh"
    warnings.warn(
        f"checkpoint {path} is unreadable (truncated by a crash?); set aside as {aside.name}; {then}", stacklevel=2
    )
    return str(good) if good else None
