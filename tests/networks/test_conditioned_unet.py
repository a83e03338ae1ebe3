import pytest
import torch

from vmat_monai.networks import ConditionedUNet, FiLM, cpu_conditioned_unet


def test_default_architecture_size_and_output():
    net = ConditionedUNet()
    n = sum(p.numel() for p in net.parameters())
    assert 20e6 < n < 25e6  # the research model's size (4 levels, 48-384 channels)
    with torch.no_grad():
        y = net(torch.randn(1, 9, 16, 16, 16), torch.rand(1, 13))
    assert y.shape == (1, 1, 16, 16, 16) and float(y.min()) >= 0


def test_cpu_variant_is_smaller_and_keeps_the_input_size():
    net = cpu_conditioned_unet()
    assert sum(p.numel() for p in net.parameters()) < 3e6
    with torch.no_grad():
        y = net(torch.randn(2, 9, 32, 32, 32), torch.rand(2, 13))
    assert y.shape == (2, 1, 32, 32, 32) and float(y.min()) >= 0


def test_film_starts_as_identity_and_conditions_after_training():
    film = FiLM(13, 4)
    h = torch.randn(2, 4, 3, 3, 3)
    assert torch.equal(film(h, torch.rand(2, 13)), h)
    torch.manual_seed(0)
    net = ConditionedUNet(3, 2, 1, channels=(8, 16), n_condition=13)
    x = torch.randn(1, 2, 8, 8, 8)
    c_lo, c_hi = torch.zeros(1, 13), torch.ones(1, 13)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):  # learn: high constraints -> high output
        opt.zero_grad()
        loss = (net(x, c_hi) - 2.0).pow(2).mean() + net(x, c_lo).pow(2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(net(x, c_hi).mean()) > float(net(x, c_lo).mean()) + 0.1


def test_bad_constraint_shape_is_reported():
    net = ConditionedUNet(3, 2, 1, channels=(8, 16))
    with pytest.raises(ValueError, match=r"constraints must be \(batch, 13\)"):
        net(torch.randn(1, 2, 8, 8, 8), torch.rand(13))
