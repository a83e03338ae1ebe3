import pytest
import torch
from monai.networks.nets import UNet

from vmat_monai.networks import ConditionedUNet, PriorResidual, cpu_conditioned_unet


def test_starts_as_the_prior_and_sums_sector_channels():
    torch.manual_seed(0)
    net = PriorResidual(ConditionedUNet(3, 5, 1, channels=(8, 16), n_condition=4, out_activation=None), 3)
    x = torch.rand(2, 5, 8, 8, 8)
    y = net(x, torch.rand(2, 4))
    assert y.shape == (2, 1, 8, 8, 8)
    torch.testing.assert_close(y, x[:, 2:].sum(1, keepdim=True))  # gate 0: exactly the prior


def test_learns_a_correction_of_either_sign_and_clips_in_eval():
    torch.manual_seed(0)
    net = PriorResidual(cpu_conditioned_unet(3, 4, channels=(8, 16), out_activation=None), 1)
    x = torch.rand(1, 3, 16, 16, 16)
    c = torch.rand(1, 4)
    target = x[:, -1:] * 0.5 - 0.2  # below the prior everywhere, negative in places
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    start = float((net(x, c) - target).abs().mean().detach())
    for _ in range(30):
        opt.zero_grad()
        loss = (net(x, c) - target).abs().mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * start and float(net.gate.detach()) != 0.0
    assert float(net(x, c).min().detach()) < 0  # training output is raw
    net.eval()
    with torch.no_grad():
        assert float(net(x, c).min()) >= 0  # dose is never negative at inference


def test_plain_monai_network_gets_constraints_as_channels():
    net = PriorResidual(UNet(3, 3 + 4, 1, channels=(8, 16), strides=(2,), num_res_units=0), 1)
    x = torch.rand(1, 3, 16, 16, 16)
    with torch.no_grad():
        y = net(x, torch.rand(1, 4))
    torch.testing.assert_close(y, x[:, -1:])


def test_without_a_prior_channel_is_refused():
    with pytest.raises(ValueError, match="prior_channels"):
        PriorResidual(cpu_conditioned_unet(9, 13, out_activation=None), 0)
    with pytest.raises(ValueError, match="out_activation"):
        ConditionedUNet(out_activation="relu")


def test_a_non_linear_output_is_refused():
    with pytest.raises(ValueError, match=r"linear output.*configs/residual\.json"):
        PriorResidual(cpu_conditioned_unet(9, 13), 1)  # softplus: corrections could never be negative
