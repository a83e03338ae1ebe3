"""Training progress for a terminal and for a log file.

On a terminal Lightning's tqdm bar is right. In a log file (``> train.log``, a batch system) a
tqdm bar writes every redraw, so a 20-minute training leaves thousands of overwritten states.
:class:`LineProgressBar` writes one plain line at most every ``every_s`` seconds and one at the end
of each epoch and validation; :func:`progress_bar` picks between the two.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

from vmat_monai.progress_lines import is_terminal

__all__ = ["LineProgressBar", "progress_bar"]


class LineProgressBar(ProgressBar):
    """One line per update: ``epoch 3 step 45/150 loss=0.123 val_mae_body_gy=6.05 0.81 it/s 12:03``.

    Args:
        every_s: least seconds between two lines within an epoch (the epoch's last line always comes).
        stream: where the lines go (default: stderr).
    """

    def __init__(self, every_s: float = 30.0, stream: Any = None):
        super().__init__()
        self.every_s, self.stream = float(every_s), stream
        self._enabled = True
        self._t0 = self._last = self._epoch_t0 = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, text: str) -> None:
        if self._enabled and getattr(self.trainer, "is_global_zero", True):
            print(text, file=self.stream or sys.stderr, flush=True)

    def _status(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> str:
        total = self.total_train_batches
        of = f"/{total}" if isinstance(total, int) else ""
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        rate = step / max(time.monotonic() - self._epoch_t0, 1e-9)
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - self._t0))
        return f"epoch {trainer.current_epoch} step {step}{of} {shown} {rate:.2f} it/s {elapsed}".replace("  ", " ")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = self._last = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_t0 = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(self._status(trainer, pl_module, args[-1] + 1))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.monotonic()
        self._line(self._status(trainer, pl_module, trainer.fit_loop.epoch_loop.batch_progress.current.ready))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            self._line(f"validation after epoch {trainer.current_epoch}: {shown}")


def progress_bar(every_s: float = 30.0) -> ProgressBar:
    """Lightning's tqdm bar on a terminal, :class:`LineProgressBar` otherwise (a log file, a pipe)."""
    return TQDMProgressBar() if is_terminal() else LineProgressBar(every_s)
