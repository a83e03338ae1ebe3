import itertools

import pytest
import torch
from monai.networks.nets import UNet

from tests.engine.stub_networks import Offset
from vmat_monai.engine import DosePredictionModule, dose_metrics
from vmat_monai.losses import DoseMAELoss
from vmat_monai.networks import ConditionedUNet


def _batch(n=2, c=8, k=13, size=16):
    torch.manual_seed(0)
    return {
        "input": torch.randn(n, 1 + c, size, size, size),
        "constraints": torch.rand(n, k),
        "dose": torch.rand(n, 1, size, size, size),
        "masks": (torch.rand(n, c, size, size, size) > 0.7).float(),
        "body": torch.ones(n, 1, size, size, size),
        "prescription_gy": torch.full((n,), 70.0),
    }


def test_any_monai_network_gets_the_constraints_as_channels():
    net = UNet(3, 1 + 8 + 13, 1, channels=(8, 16), strides=(2,))
    m = DosePredictionModule(net, DoseMAELoss(), roi_size=(16, 16, 16))
    assert not m.film
    b = _batch()
    loss = m.training_step(b, 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert m.predict_volume(b["input"][:1, :, :, :, :12], b["constraints"][:1]).shape == (1, 1, 16, 16, 12)


def test_conditioned_network_gets_film_and_sliding_window_covers_the_volume():
    m = DosePredictionModule(
        ConditionedUNet(3, 9, 1, channels=(8, 16)), DoseMAELoss(), roi_size=(16, 16, 16), overlap=0.5
    )
    assert m.film
    b = _batch(n=2, size=24)
    out = m.predict_volume(b["input"], b["constraints"])
    assert out.shape == (2, 1, 24, 24, 24) and float(out.min()) >= 0


def test_dose_metrics_known_values():
    true = torch.full((4, 4, 4), 70.0)
    pred = true + 2.0
    body = torch.ones(4, 4, 4)
    ptv = torch.zeros(4, 4, 4)
    ptv[1:3, 1:3, 1:3] = 1
    m = dose_metrics(pred, true, body, ptv)
    assert m == {
        "mae_body_gy": pytest.approx(2.0),
        "mae_ptv_gy": pytest.approx(2.0),
        "d95_error_gy": pytest.approx(2.0),
    }


def test_the_loss_is_computed_in_float32_under_bf16_autocast():
    """Mixed precision (bf16, CPU or GPU): the network runs in bf16 but the loss compares doses in
    float32 (bf16 resolves 0.25-0.5 Gy near 70 Gy, too coarse for the DVH and PTV terms): the loss
    of a bf16 prediction equals the float32 loss of the same values."""
    from vmat_monai.losses import CombinedDoseLoss, DVHLoss

    loss = CombinedDoseLoss({"mae": DoseMAELoss(), "dvh": DVHLoss([0], [1, 2], temperature_gy=1.0)})
    m = DosePredictionModule(ConditionedUNet(3, 9, 1, channels=(8, 16)), loss, roi_size=(16, 16, 16))
    b = _batch()
    pred = (b["dose"] + 0.013).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m._loss(pred, b)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(m._loss(pred.float(), b)), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = m.training_step(b, 0)
    assert trained.dtype == torch.float32 and torch.isfinite(trained)
    one = {k: v[:1] for k, v in b.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):  # validation under bf16-mixed: metrics from float32
        metrics = m.validation_step(one, 0)
    assert set(metrics) >= {"mae_body_gy", "d95_error_gy"} and all(isinstance(v, float) for v in metrics.values())


def test_module_without_loss_refuses_to_train():
    m = DosePredictionModule(ConditionedUNet(3, 9, 1, channels=(8, 16)))
    with pytest.raises(RuntimeError, match="without a loss"):
        m.training_step(_batch(), 0)


def test_time_cosine_warms_up_then_anneals_over_the_budget():
    from vmat_monai.engine.module import time_cosine

    assert time_cosine(0.0, 100.0) == pytest.approx(0.01)  # warm-up starts at the floor
    assert time_cosine(1.0, 100.0) == pytest.approx(0.5)  # half-way through the 2 % warm-up
    assert time_cosine(2.0, 100.0) == pytest.approx(1.0)
    assert time_cosine(51.0, 100.0) == pytest.approx(0.01 + 0.99 * 0.5)
    assert time_cosine(100.0, 100.0) == pytest.approx(0.01) and time_cosine(500.0, 100.0) == pytest.approx(0.01)
    values = [time_cosine(t, 100.0) for t in range(2, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_checkpoint_of_another_input_layout_fails_with_advice(tmp_path):
    """A checkpoint trained with the beam dose prior (10 inputs) does not load into a 9-input network."""
    from vmat_monai.engine.checkpoint_weights import load_network_weights

    trained = ConditionedUNet(3, 10, 1, channels=(8, 16))
    torch.save({"state_dict": {f"network.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "m.ckpt")
    other = ConditionedUNet(3, 10, 1, channels=(8, 16))
    load_network_weights(other, tmp_path / "m.ckpt")
    pairs = zip(trained.state_dict().values(), other.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    with pytest.raises(RuntimeError, match=r"does not fit the network.*prior_channels"):
        load_network_weights(ConditionedUNet(3, 9, 1, channels=(8, 16)), tmp_path / "m.ckpt")
    with pytest.raises(FileNotFoundError, match="train first"):
        load_network_weights(other, tmp_path / "missing.ckpt")


def test_checkpoint_of_the_other_network_variant_names_the_config_to_use(tmp_path):
    from vmat_monai.engine.checkpoint_weights import load_network_weights
    from vmat_monai.networks import PriorResidual

    plain = ConditionedUNet(3, 10, 1, channels=(8, 16))
    residual = PriorResidual(ConditionedUNet(3, 10, 1, channels=(8, 16), out_activation=None))
    for net, name in ((plain, "plain.ckpt"), (residual, "residual.ckpt")):
        torch.save({"state_dict": {f"network.{k}": v for k, v in net.state_dict().items()}}, tmp_path / name)
    with pytest.raises(RuntimeError, match=r"holds a PriorResidual network.*add `residual` to --config"):
        load_network_weights(ConditionedUNet(3, 10, 1, channels=(8, 16)), tmp_path / "residual.ckpt")
    with pytest.raises(RuntimeError, match=r"holds a plain network.*drop `residual`"):
        load_network_weights(residual, tmp_path / "plain.ckpt")


def test_model_pt_of_a_wrapped_network_loads(tmp_path):
    """models/model.pt holds the network's own state dict: a PriorResidual's (network.*, gate) loads
    as it is, and is not mistaken for a Lightning checkpoint's `network.` prefix."""
    from vmat_monai.engine.bundle import save_model_weights
    from vmat_monai.engine.checkpoint_weights import load_network_weights
    from vmat_monai.networks import PriorResidual

    torch.manual_seed(0)
    trained = PriorResidual(ConditionedUNet(3, 10, 1, channels=(8, 16), out_activation=None))
    with torch.no_grad():
        trained.gate.fill_(0.5)
    save_model_weights(None, trained, tmp_path / "model.pt")
    other = PriorResidual(ConditionedUNet(3, 10, 1, channels=(8, 16), out_activation=None))
    load_network_weights(other, tmp_path / "model.pt")
    assert float(other.gate) == 0.5
    pairs = zip(trained.state_dict().values(), other.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    with pytest.raises(RuntimeError, match=r"holds a PriorResidual network.*add `residual` to --config"):
        load_network_weights(ConditionedUNet(3, 10, 1, channels=(8, 16)), tmp_path / "model.pt")


class _LeftOrganAndGoal(torch.nn.Module):
    """Stub network: the left parotid's distance channel plus the left parotid's goal (OpenKBP layout)."""

    def __init__(self, channel: int, goal: int) -> None:
        super().__init__()
        self.channel, self.goal = channel, goal

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x[:, [self.channel]] + c[:, self.goal].view(-1, 1, 1, 1, 1)


def test_flip_tta_mirrors_paired_channels_and_goals_and_mirrors_back(tmp_path):
    """Known answer: TTA of "left organ + its goal" is the mean of the left and the right organ + goal."""
    from vmat_monai.constraints import layout_for, spec
    from vmat_monai.engine.inputs import model_inputs
    from vmat_monai.engine.predict import DosePredictor
    from vmat_monai.structures import get_structure_set

    hn = get_structure_set("openkbp_hn")
    left, right = 1 + hn.index("LeftParotid"), 1 + hn.index("RightParotid")  # input channel 0 is the CT
    g_left, g_right = spec("parotid_L_Dmean", layout_for(hn)).index, spec("parotid_R_Dmean", layout_for(hn)).index
    torch.save({}, tmp_path / "stub.pt")
    torch.manual_seed(0)
    x = torch.randn(1, 1 + hn.n_channels, 8, 6, 4)
    c = torch.rand(1, len(layout_for(hn)))
    kw = dict(inputs=model_inputs("openkbp_hn", prior_channels=0), roi_size=(8, 6, 4), device="cpu")
    predictor = DosePredictor(_LeftOrganAndGoal(left, g_left), tmp_path / "stub.pt", **kw)
    plain = predictor.predict_relative(x, c)
    tta = DosePredictor(_LeftOrganAndGoal(left, g_left), tmp_path / "stub.pt", flip_tta=True, **kw)
    both = tta.predict_relative(x, c)
    # per call: the same predictor with and without the flip (the what-if loads a checkpoint once)
    torch.testing.assert_close(predictor.predict_relative(x, c, flip_tta=True), both)
    torch.testing.assert_close(tta.predict_relative(x, c, flip_tta=False), plain)
    torch.testing.assert_close(plain, x[:, [left]] + c[0, g_left])
    # the mirror image's "left" organ is the right one turned over; mirrored back it lies where it was
    expected = 0.5 * (x[:, [left]] + c[0, g_left] + x[:, [right]] + c[0, g_right])
    torch.testing.assert_close(both, expected)


def test_ensemble_of_checkpoints_gives_mean_and_spread(tmp_path):
    """Known answer: members predicting 0.5, 0.7 and 1.2 give the mean 0.8 and sd (ddof 1) 0.3606."""
    from vmat_monai.engine.checkpoint_weights import checkpoint_list
    from vmat_monai.engine.inputs import model_inputs
    from vmat_monai.engine.predict import DosePredictor

    paths = []
    for i, level in enumerate((0.5, 0.7, 1.2)):
        torch.save({"state_dict": {"network.level": torch.tensor(level)}}, tmp_path / f"m{i}.ckpt")
        paths.append(tmp_path / f"m{i}.ckpt")
    kw = dict(inputs=model_inputs("openkbp_hn", prior_channels=0), roi_size=(8, 6, 4), device="cpu")
    ens = DosePredictor(Offset(), ",".join(str(p) for p in paths), **kw)
    assert ens.ckpt_paths == paths and len(ens.members) == 3
    x, c = torch.randn(1, 11, 8, 6, 4), torch.rand(1, 10)
    members = ens.predict_members(x, c)
    assert members.shape == (3, 1, 8, 6, 4)
    torch.testing.assert_close(members[:, 0, 0, 0, 0], torch.tensor([0.5, 0.7, 1.2]))
    torch.testing.assert_close(ens.predict_relative(x, c), torch.full((1, 1, 8, 6, 4), 0.8))
    assert float(members.std(0).mean()) == pytest.approx(0.36056, abs=1e-4)
    # the members are copies: loading the second did not overwrite the first
    assert float(ens.members[0].network.level) == pytest.approx(0.5)
    assert checkpoint_list(paths) == paths and checkpoint_list(f" {paths[0]} ,") == [paths[0]]
    with pytest.raises(ValueError, match="no checkpoint given"):
        checkpoint_list(" , ")
