"""Each loss against a hand-computed value."""

import math

import pytest
import torch

from vmat_monai.losses import (
    AsymmetricPTVLoss,
    CombinedDoseLoss,
    DoseMAELoss,
    DVHLoss,
    GradientLoss,
    StructureWeightedLoss,
)


def _t(values, shape=None):
    x = torch.tensor(values, dtype=torch.float32)
    return x.view(shape or (1, 1, len(values), 1, 1))


def test_mae_and_mse_inside_the_body():
    pred, target, body = _t([1, 2, 3, 4]), _t([1, 1, 1, 1]), _t([1, 1, 0, 0])
    assert DoseMAELoss()(pred, target, body=body).item() == pytest.approx(0.5)
    assert DoseMAELoss(body_only=False)(pred, target, body=body).item() == pytest.approx(1.5)
    assert DoseMAELoss(squared=True)(pred, target, body=body).item() == pytest.approx(0.5)
    assert DoseMAELoss(squared=True)(pred, target).item() == pytest.approx((0 + 1 + 4 + 9) / 4)


def test_gradient_loss():
    pred = _t([0, 1, 2, 3])  # finite differences 1, 1, 1 along the only long axis
    assert GradientLoss()(pred, torch.zeros_like(pred)).item() == pytest.approx(1.0)
    assert GradientLoss()(pred, pred + 5).item() == 0.0  # an offset has the same gradients
    p2 = torch.zeros(1, 1, 2, 2, 1)
    p2[0, 0, 1, :, 0] = 2.0  # differences: axis 2 -> [2, 2]; axis 3 -> [0, 0]
    assert GradientLoss()(p2, torch.zeros_like(p2)).item() == pytest.approx((2 + 0) / 2)


def test_asymmetric_ptv_loss_charges_underdosage_more():
    masks = _t([1, 1, 0], (1, 1, 3, 1, 1))
    pred, target = _t([0.9, 1.1, 5.0]), _t([1.0, 1.0, 0.0])
    # inside: under by 0.1 (x3) and over by 0.1 -> (0.3 + 0.1) / 2; the outside voxel is ignored
    assert AsymmetricPTVLoss([0], under_weight=3.0)(pred, target, masks=masks).item() == pytest.approx(0.2)


def test_asymmetric_ptv_loss_averaged_over_the_body_is_a_quantile_shift_inside_the_targets():
    masks = _t([1, 1, 0, 0], (1, 1, 4, 1, 1))
    body = _t([1, 1, 1, 1], (1, 1, 4, 1, 1))
    pred, target = _t([0.9, 1.1, 5.0, 0.0]), _t([1.0, 1.0, 0.0, 0.0])
    loss = AsymmetricPTVLoss([0], under_weight=3.0, average_over="body")
    # the same sum over the targets, (0.3 + 0.1), divided by the 4 body voxels
    assert loss(pred, target, masks=masks, body=body).item() == pytest.approx(0.1)
    # next to a body MAE of weight 1 and this term of weight w, a target voxel's cost per Gy is
    # 1 + 3w under and 1 + w over: with w = 1 the best constant inside the targets is their 2/3 quantile
    plan = torch.linspace(0.0, 1.0, 301).view(1, 1, 301, 1, 1)
    inside, everywhere = torch.ones_like(plan), torch.ones_like(plan)
    costs = [
        DoseMAELoss()(torch.full_like(plan, c), plan, body=everywhere)
        + loss(torch.full_like(plan, c), plan, masks=inside, body=everywhere)
        for c in torch.linspace(0.0, 1.0, 101)
    ]
    assert float(torch.linspace(0.0, 1.0, 101)[int(torch.stack(costs).argmin())]) == pytest.approx(2 / 3, abs=0.01)
    with pytest.raises(ValueError, match="needs body"):
        loss(pred, target, masks=masks)
    with pytest.raises(ValueError, match="average_over"):
        AsymmetricPTVLoss([0], average_over="patch")


def test_structure_weighted_loss_weights_and_value():
    masks = torch.zeros(1, 2, 7, 1, 1)
    masks[0, 0, 0] = 1  # target voxel 0
    masks[0, 1, 4] = 1  # organ voxel 4; band of 1 voxel: 3, 4, 5
    loss = StructureWeightedLoss([0], [1], w_target=3.0, w_band=2.0, w_background=1.0, band_voxels=1)
    w = loss.weights(masks).flatten().tolist()
    assert w == [3.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0]
    pred, target = torch.ones(1, 1, 7, 1, 1), torch.zeros(1, 1, 7, 1, 1)
    assert loss(pred, target, masks=masks).item() == pytest.approx(1.0)  # uniform error -> 1
    pred[0, 0, 0] = 3.0  # error 3 at weight 3
    assert loss(pred, target, masks=masks).item() == pytest.approx((9 + 1 + 1 + 2 + 2 + 2 + 1) / 12)


def _dvh_reference(loss: DVHLoss, pred, target, masks, rx, target_levels):
    """The DVH loss by its definition: soft volumes over the whole patch, one structure and one
    threshold at a time; a target's thresholds are fractions of its own level (Rx × level / top level)."""
    shape = (-1, 1, 1, 1, 1)
    p, t = pred * rx.view(shape), target * rx.view(shape)
    top = max(target_levels)
    terms = [(c, [rx * (lv / top) * f for f in loss.tf], True) for c, lv in zip(loss.t, target_levels, strict=True)]
    num, den = 0.0, 0.0
    for c, thresholds, under in terms + [(c, loss.og, False) for c in loss.o]:
        m = masks[:, c : c + 1]
        present = (m.flatten(1).sum(1) > 0).float()
        for thr in thresholds:
            thr = thr if torch.is_tensor(thr) else torch.full_like(rx, thr)
            vp, vt = loss.soft_volume(p, m, thr), loss.soft_volume(t, m, thr)
            num = num + ((torch.relu(vt - vp) if under else torch.relu(vp - vt)) * present).sum()
            den = den + present.sum()
    return num / max(float(den), 1.0)


def test_dvh_loss_on_structure_voxels_equals_its_definition():
    """The loss computed on each structure's voxels only (fast path) equals the whole-patch
    definition, value and gradient: two cases with different Rx, soft mask edges, an absent organ."""
    torch.manual_seed(0)
    pred = torch.rand(2, 1, 12, 10, 8, requires_grad=True)
    target = torch.rand(2, 1, 12, 10, 8)
    masks = (torch.rand(2, 4, 12, 10, 8) > 0.6).float()
    masks[:, 1] *= torch.rand(2, 12, 10, 8)  # interpolated (soft) mask values
    masks[1, 3] = 0  # an organ absent from the second patch
    rx = torch.tensor([70.0, 54.0])
    loss = DVHLoss([0, 1], [2, 3], target_levels=[70.0, 56.0], temperature_gy=2.0)
    got = loss(pred, target, masks=masks, rx_gy=rx)
    (g_fast,) = torch.autograd.grad(got, pred)
    want = _dvh_reference(loss, pred, target, masks, rx, [70.0, 56.0])
    (g_ref,) = torch.autograd.grad(want, pred)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert float(got) > 0 and torch.allclose(g_fast, g_ref, rtol=1e-4, atol=1e-9)
    assert float(loss(pred, target, masks=torch.zeros_like(masks), rx_gy=rx)) == 0.0  # no structure: no loss


def test_dvh_loss_holds_each_target_at_its_own_prescription():
    """A secondary target (56 of 70 Gy) planned uniformly at its level and predicted 5 Gy cold costs
    what the primary target does 5 Gy cold at 70 Gy; without its level (every target at Rx) the
    thresholds lie 9-14 Gy above its plan dose and the cold prediction went unpenalised."""
    rx = torch.tensor([70.0])
    masks = torch.zeros(1, 2, 2, 1, 1)
    masks[0, 0, 0], masks[0, 1, 1] = 1, 1  # voxel 0 in PTV70, voxel 1 in PTV56
    plan = torch.tensor([70.0, 56.0]).view(1, 1, 2, 1, 1) / 70
    loss = DVHLoss([0, 1], [], target_levels=[70.0, 56.0], target_fractions=(1.0,), temperature_gy=1.0)
    cold56, cold70 = plan.clone(), plan.clone()
    cold56[0, 0, 1] = 51 / 70
    cold70[0, 0, 0] = 65 / 70
    expected = (0.5 - 1 / (1 + math.exp(5))) / 2  # one of two (target, threshold) terms
    assert loss(cold56, plan, masks=masks, rx_gy=rx).item() == pytest.approx(expected, rel=1e-5)
    assert loss(cold70, plan, masks=masks, rx_gy=rx).item() == pytest.approx(expected, rel=1e-5)
    assert loss(plan, plan, masks=masks, rx_gy=rx).item() == 0.0
    flat = DVHLoss([0, 1], [], target_fractions=(1.0,), temperature_gy=1.0)  # both targets at Rx
    assert flat(cold56, plan, masks=masks, rx_gy=rx).item() < 1e-5
    with pytest.raises(ValueError, match="target_levels"):
        DVHLoss([0, 1], [], target_levels=[70.0])


def test_dvh_loss_known_values():
    masks = torch.ones(1, 1, 1, 1, 1)
    rx = torch.tensor([70.0])
    loss = DVHLoss([0], [], target_fractions=(1.0,), temperature_gy=1.0)
    target, pred = torch.full((1, 1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1, 1), 60 / 70)
    # plan covers the threshold half (sigmoid(0)); prediction 10 Gy short (sigmoid(-10))
    expected = 0.5 - 1 / (1 + math.exp(10))
    assert loss(pred, target, masks=masks, rx_gy=rx).item() == pytest.approx(expected, rel=1e-5)
    assert loss(target, target, masks=masks, rx_gy=rx).item() == 0.0
    assert loss(torch.full_like(pred, 1.2), target, masks=masks, rx_gy=rx).item() == 0.0  # over-dosage is free
    organ = DVHLoss([], [0], organ_thresholds_gy=(30.0,), temperature_gy=1.0)
    hot, cold = torch.full((1, 1, 1, 1, 1), 40 / 70), torch.full((1, 1, 1, 1, 1), 20 / 70)
    assert organ(hot, cold, masks=masks, rx_gy=rx).item() == pytest.approx(
        1 / (1 + math.exp(-10)) - 1 / (1 + math.exp(10)), rel=1e-5
    )
    assert organ(cold, hot, masks=masks, rx_gy=rx).item() == 0.0
    # the temperature is in Gy: the same Gy error costs the same at another prescription
    rx2 = torch.tensor([50.0])
    assert loss(torch.full_like(pred, 40 / 50), target, masks=masks, rx_gy=rx2).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_combined_loss_is_the_weighted_sum():
    pred, target, body = _t([1, 2, 3, 4]), _t([1, 1, 1, 1]), _t([1, 1, 1, 1])
    c = CombinedDoseLoss({"mae": DoseMAELoss(), "grad": GradientLoss()}, {"mae": 2.0, "grad": 0.5})
    assert c(pred, target, body=body).item() == pytest.approx(2.0 * 1.5 + 0.5 * 1.0)
    assert c.last_terms == {"mae": pytest.approx(1.5), "grad": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="unknown losses"):
        CombinedDoseLoss({"mae": DoseMAELoss()}, {"dvh": 1.0})
