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


def test_constraints_are_standardised_with_the_training_statistics():
    torch.manual_seed(0)
    net = ConditionedUNet(3, 2, 1, channels=(8, 16), n_condition=3)
    x, c = torch.randn(1, 2, 8, 8, 8), torch.tensor([[1.0, 0.10, 0.5]])
    for level in [*net.enc, net.bottleneck, *net.dec]:  # a FiLM that sees the vector
        torch.nn.init.normal_(level.film.mlp[-1].weight, std=0.1)
    with torch.no_grad():
        before = net(x, c)
    # entry 0 constant (centred only), entry 1 spans 0.05-0.15 (sd 0.05), entry 2 sd 0.001 (floored)
    train = torch.tensor([[1.0, 0.05, 0.499], [1.0, 0.15, 0.501]])
    net.set_condition_statistics(train)
    torch.testing.assert_close(net.condition_mean, torch.tensor([1.0, 0.10, 0.5]))
    torch.testing.assert_close(net.condition_scale, torch.tensor([1.0, 20.0, 100.0]))
    assert bool(net.condition_fitted)
    # a checkpoint carries the statistics; one written before they existed loads as identity
    fresh = ConditionedUNet(3, 2, 1, channels=(8, 16), n_condition=3)
    fresh.load_state_dict(net.state_dict())
    torch.testing.assert_close(fresh.condition_scale, net.condition_scale)
    plain = ConditionedUNet(3, 2, 1, channels=(8, 16), n_condition=3)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("condition_")})
    assert not bool(plain.condition_fitted) and torch.equal(plain.condition_scale, torch.ones(3))
    with torch.no_grad():
        after = net(x, c)
        # the MLPs see (c - mean) * scale: the same weights fed the standardised vector agree
        torch.testing.assert_close(after, plain(x, torch.tensor([[0.0, 0.0, 0.0]])))
        torch.testing.assert_close(net(x, torch.tensor([[1.0, 0.15, 0.5]])), plain(x, torch.tensor([[0.0, 1.0, 0.0]])))
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match=r"\(N > 0, 3\)"):
        net.set_condition_statistics(torch.ones(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        net.set_condition_statistics(torch.tensor([[1.0, float("nan"), 0.5]]))
