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


def _bundle_checkpoint_callbacks(ckpt_dir) -> list:
    """The bundle's own ``checkpoint`` and ``last_checkpoint`` definitions from train.json."""
    from pathlib import Path

    from monai.bundle import ConfigParser

    train = Path(__file__).resolve().parents[2] / "bundles" / "vmat_dose_unet" / "configs" / "train.json"
    parser = ConfigParser()
    parser.read_config(str(train))
    parser["ckpt_dir"] = str(ckpt_dir)
    return [parser.get_parsed_content(key) for key in ("checkpoint", "last_checkpoint")]


@pytest.mark.parametrize("stop", ["max_epochs", "max_steps"])
def test_last_ckpt_holds_the_final_weights_even_when_validation_got_worse(tmp_path, stop):
    """last.ckpt is what a resume and the time-budgeted jobs use: the state after the final step,
    written every epoch, not (as Lightning >= 2.6 does with save_last) only when the best improves."""
    import pytorch_lightning as pl

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return ((self.w - 1.0 - batch) ** 2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val_mae_body_gy", float(self.current_epoch))  # worse every epoch: best stays epoch 0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=1)
    limit = {"max_epochs": 3} if stop == "max_epochs" else {"max_epochs": 10, "max_steps": 10}  # stops mid-epoch 2
    trainer = pl.Trainer(
        callbacks=_bundle_checkpoint_callbacks(tmp_path),
        plugins=[AtomicCheckpointIO()],
        check_val_every_n_epoch=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **limit,
    )
    model = Model()
    trainer.fit(model, data, data)
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["global_step"] == trainer.global_step  # the final step, whatever validation said
    torch.testing.assert_close(last["state_dict"]["w"], model.w.detach())
    assert [p.name for p in tmp_path.glob("best-*.ckpt")] == ["best-epoch=1-val_mae_body_gy=1.000.ckpt"]
