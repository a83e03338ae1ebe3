"""The machine's default precision and memory layout, and that channels_last_3d changes speed, not results."""

import copy
import sys

import pytest
import torch

from vmat_monai.engine import DosePredictionModule
from vmat_monai.engine import numeric_formats as nf
from vmat_monai.losses import CombinedDoseLoss, DoseMAELoss, GradientLoss
from vmat_monai.networks import ConditionedUNet

_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\nbogomips\t: 4000\n"


@pytest.mark.parametrize(
    ("extra", "native"),
    [("amx_bf16 amx_tile", True), ("avx512_bf16", True), ("avx512bw avx512vl", False), ("", False)],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, extra, native):
    monkeypatch.setattr(sys, "platform", "linux")
    info = tmp_path / "cpuinfo"
    info.write_text(_FLAGS.format(extra=extra))
    assert nf.cpu_has_native_bf16(info) is native


def test_unreadable_cpu_flags_mean_no_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert nf.cpu_has_native_bf16(tmp_path / "missing") is False
    monkeypatch.setattr(sys, "platform", "darwin")
    info = tmp_path / "cpuinfo"
    info.write_text(_FLAGS.format(extra="amx_bf16"))
    assert nf.cpu_has_native_bf16(info) is False


def test_default_precision_per_machine(monkeypatch):
    monkeypatch.setattr(nf, "cpu_has_native_bf16", lambda: True)
    assert nf.default_precision("cpu") == "bf16-mixed"
    monkeypatch.setattr(nf, "cpu_has_native_bf16", lambda: False)
    assert nf.default_precision("cpu") == "32-true"  # emulated bf16 is many times slower
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert nf.default_precision("cuda") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert nf.default_precision("cuda") == "16-mixed"


def test_channels_last_is_the_cpu_default_only():
    assert nf.default_channels_last("cpu") is True
    assert nf.default_channels_last("cuda") is False


def _batch(n=2, size=16):
    torch.manual_seed(0)
    return {
        "input": torch.randn(n, 9, size, size, size),
        "constraints": torch.rand(n, 13),
        "dose": torch.rand(n, 1, size, size, size),
        "masks": (torch.rand(n, 8, size, size, size) > 0.7).float(),
        "body": torch.ones(n, 1, size, size, size),
        "prescription_gy": torch.full((n,), 70.0),
    }


def test_channels_last_gives_the_same_loss_gradients_and_weights():
    """One training step in channels_last_3d and in the default layout: same loss, same gradients,
    and the weights load back into a network in the default layout with the same predictions."""
    torch.manual_seed(1)
    net = ConditionedUNet(3, 9, 1, channels=(8, 16))
    loss = CombinedDoseLoss({"mae": DoseMAELoss(), "gradient": GradientLoss()}, {"mae": 1.0, "gradient": 0.5})
    plain = DosePredictionModule(copy.deepcopy(net), loss, roi_size=(16, 16, 16))
    params = list(net.parameters())
    fast = DosePredictionModule(net, loss, roi_size=(16, 16, 16), channels_last=True)
    assert [id(p) for p in fast.network.parameters()] == [id(p) for p in params]  # optimisers see the same tensors
    convs = [p for p in fast.network.parameters() if p.dim() == 5]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in convs)
    b = _batch()
    got, want = fast.training_step(b, 0), plain.training_step(b, 0)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    got.backward()
    want.backward()
    for p, q in zip(fast.network.parameters(), plain.network.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    reloaded = ConditionedUNet(3, 9, 1, channels=(8, 16))
    reloaded.load_state_dict(fast.network.state_dict())
    with torch.no_grad():
        x = b["input"][:1]
        assert torch.allclose(
            DosePredictionModule(reloaded, roi_size=(16, 16, 16)).predict_volume(x, b["constraints"][:1]),
            fast.predict_volume(x, b["constraints"][:1]),
            atol=1e-5,
        )
