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


def _conv_grads(conv: torch.nn.Conv3d, x: torch.Tensor, g: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, ...]:
    """Output, input gradient and weight gradient of ``conv`` for ``x`` and the output gradient ``g``."""
    conv.zero_grad()
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = conv(x)
    y.backward(g.to(y.dtype))
    return y.detach().double(), x.grad.double(), conv.weight.grad.double()


@pytest.mark.parametrize("shape", [(2, 4, 4), (2, 2, 2), (4, 2, 4)])
def test_a_conv3d_with_a_two_voxel_side_computes_bf16_training_in_float32(shape):
    """The inputs whose bf16 weight gradient a CPU kernel gets wrong (NaN, or far off, on AVX512-BF16
    processors with a 2-voxel-deep input) give, through the guard, the float32 output and gradients."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(16, 16, 3, padding=1)
    reference = copy.deepcopy(conv).double()
    nf.guard_small_bf16_conv3d(conv)
    assert type(conv) is nf.SmallInputFloat32Conv3d
    x, g = torch.randn(2, 16, *shape), torch.randn(2, 16, *shape)
    got = _conv_grads(conv, x, g, bf16=True)
    want = _conv_grads(reference, x.double(), g.double(), bf16=False)
    for a, b in zip(got, want, strict=True):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_guard_leaves_larger_inputs_and_float32_to_the_plain_convolution():
    """Above two voxels a side the convolution runs in bf16 under autocast (the output is bf16), in
    float32 without autocast; the guard keeps the parameters and the state dict's keys."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(4, 8, 3, padding=1), torch.nn.ConvTranspose3d(8, 4, 2, stride=2))
    params, keys = [id(p) for p in net.parameters()], list(net.state_dict())
    nf.guard_small_bf16_conv3d(net)
    assert [id(p) for p in net.parameters()] == params and list(net.state_dict()) == keys
    assert type(net[1]) is torch.nn.ConvTranspose3d
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net[0](torch.randn(1, 4, 3, 8, 8)).dtype == torch.bfloat16
        assert net[0](torch.randn(1, 4, 2, 8, 8)).dtype == torch.float32
    assert net[0](torch.randn(1, 4, 2, 8, 8)).dtype == torch.float32
    bf16 = copy.deepcopy(net).to(torch.bfloat16)  # a bf16-true network gets bf16 back, computed in float32
    assert bf16[0](torch.randn(1, 4, 2, 8, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_a_bf16_training_step_on_32_cubed_patches_has_finite_float32_like_gradients():
    """The CPU network's deepest level is 2³ on a 32³ patch: under bf16 autocast every gradient of a
    training step is finite and points where the float32 gradient points (the modules of both families
    carry the guard)."""
    from vmat_monai.networks import cpu_conditioned_unet

    torch.manual_seed(0)
    net = cpu_conditioned_unet(in_channels=9, out_activation=None)
    module = DosePredictionModule(net, DoseMAELoss(), roi_size=(32, 32, 32), channels_last=True)
    assert not any(type(m) is torch.nn.Conv3d for m in module.network.modules())
    b = _batch(n=2, size=32)
    grads = {}
    for bf16 in (False, True):
        module.network.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(b, 0)
        loss.backward()
        grads[bf16] = {k: p.grad.clone() for k, p in module.network.named_parameters() if p.grad is not None}
    for k, g in grads[True].items():
        assert torch.isfinite(g).all(), k
        ref = grads[False][k]
        if ref.norm() > 1e-6:
            assert torch.nn.functional.cosine_similarity(g.flatten(), ref.flatten(), dim=0) > 0.9, k
