"""Checkpoints after a hard crash: atomic writes, a truncated last.ckpt set aside, resume from the newest good one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from vmat_monai.engine.checkpoints import AtomicCheckpointIO, checkpoint_is_readable, resumable_checkpoint


def _ckpt(step: int) -> dict:
    return {"state_dict": {"w": torch.full((64, 64), float(step))}, "global_step": step}


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL while the checkpoint's bytes are being written: the file keeps the previous checkpoint."""
    path = tmp_path / "last.ckpt"
    code = textwrap.dedent(
        f"""
        import os, signal, torch
        from vmat_monai.engine.checkpoints import AtomicCheckpointIO
        io = AtomicCheckpointIO()
        io.save_checkpoint({{"state_dict": {{"w": torch.zeros(64, 64)}}, "global_step": 1}}, {str(path)!r})
        real_save = torch.save
        def dying_save(obj, f, *a, **k):  # half the bytes reach the disk, then the process is killed
            import io as _io
            buf = _io.BytesIO()
            real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        io.save_checkpoint({{"state_dict": {{"w": torch.ones(64, 64)}}, "global_step": 2}}, {str(path)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert list(tmp_path.glob(".tmp-*last.ckpt"))  # the unfinished write is a hidden temporary file
    assert torch.load(path, weights_only=True)["global_step"] == 1  # the complete previous checkpoint
    assert resumable_checkpoint(path) == str(path)
    assert not list(tmp_path.glob(".tmp-*"))  # the leftover is cleaned before resuming


def test_a_truncated_checkpoint_is_set_aside_and_the_newest_good_one_used(tmp_path):
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best-epoch=3.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(1), tmp_path / "best-epoch=1.ckpt")
    io.save_checkpoint(_ckpt(3), best)
    io.save_checkpoint(_ckpt(5), last)
    os.utime(tmp_path / "best-epoch=1.ckpt", (1, 1))  # older
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])  # what a crash during a non-atomic write leaves
    assert not checkpoint_is_readable(last) and checkpoint_is_readable(best)
    with pytest.warns(UserWarning, match="unreadable .*set aside as last.corrupt-.*resuming from .*best-epoch=3"):
        assert resumable_checkpoint("last", tmp_path) == str(best)
    assert not last.exists() and len(list(tmp_path.glob("last.corrupt-*.ckpt"))) == 1
    # nothing readable left: start afresh, said aloud
    for p in tmp_path.glob("best-*.ckpt"):
        p.write_bytes(b"PK\x03\x04 truncated")
    io.save_checkpoint(_ckpt(6), last)
    last.write_bytes(last.read_bytes()[:100])
    with pytest.warns(UserWarning, match="starting afresh"):
        assert resumable_checkpoint(last) is None
    assert resumable_checkpoint("last", tmp_path / "empty") is None  # a first run: nothing to resume
    assert resumable_checkpoint(None) is None
    with pytest.raises(FileNotFoundError, match="not found"):
        resumable_checkpoint(tmp_path / "missing.ckpt")
