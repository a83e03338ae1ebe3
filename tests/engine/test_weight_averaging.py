"""The warm-up EMA of the weights: its arithmetic, and what training leaves in the module and the checkpoint."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vmat_monai.engine.weight_averaging import WarmupEMA, ema_callback, warmup_ema_avg_fn


def test_the_decay_warms_up_then_holds():
    """After n updates the new weight enters with 1 − min(decay, (1 + n) / (10 + n))."""
    ema = warmup_ema_avg_fn(0.99)
    avg, cur = torch.zeros(3), torch.ones(3)
    for n, weight in ((1, 1 - 2 / 11), (8, 1 - 9 / 18), (1000, 0.01)):
        torch.testing.assert_close(ema(avg, cur, torch.tensor(n)), torch.full((3,), weight))
    flag = torch.tensor(True)
    assert ema(torch.tensor(False), flag, torch.tensor(5)) is flag  # boolean buffers are copied, not averaged


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1])
def test_a_decay_outside_the_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        warmup_ema_avg_fn(decay)


def test_no_decay_means_no_callback():
    assert ema_callback(None) is None and ema_callback(0) is None
    assert isinstance(ema_callback(0.999), WarmupEMA) and ema_callback(0.999).decay == 0.999


class _Line(pl.LightningModule):
    """y = w · x with plain SGD, recording w after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1, bias=False)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.lin(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.seen.append(self.lin.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_training_leaves_the_average_in_the_module_and_the_checkpoint(tmp_path):
    """After fit the module holds the EMA of the weights after each step (the first step copied), and the
    checkpoint written at the epoch's end holds it as ``state_dict`` (what prediction loads), the raw
    weights as ``current_model_state`` (what a resumed training continues from)."""
    torch.manual_seed(0)
    x = torch.randn(24, 2)
    data = DataLoader(TensorDataset(x, x @ torch.tensor([[2.0], [-1.0]])), batch_size=4)
    module = _Line()
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[WarmupEMA(0.9), ModelCheckpoint(dirpath=tmp_path, filename="last", save_on_train_epoch_end=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, data)
    expected = module.seen[0]
    for n, w in enumerate(module.seen[1:], start=1):
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * w
    assert len(module.seen) == 6 and not torch.allclose(expected, module.seen[-1])
    torch.testing.assert_close(module.lin.weight.detach(), expected)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)  # written at the epoch's end, as the bundle does
    torch.testing.assert_close(ckpt["state_dict"]["lin.weight"], expected)
    torch.testing.assert_close(ckpt["current_model_state"]["lin.weight"], module.seen[-1])
