"""The conditional dose diffusion model: DDIM sampling with known answers, reproducibility, a
denoiser that learns a constant dose, and the errors for wrong inputs."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

from vmat_monai.engine.denoiser import PriorResidualDenoiser
from vmat_monai.engine.diffusion_module import DiffusionDoseModule
from vmat_monai.engine.diffusion_sampling import DiffusionSampler, DoseScale, denoise
from vmat_monai.networks import ConditionedUNet

T = 1000
STEPS = 600


class Oracle(nn.Module):
    """A perfect denoiser: the clean dose is the conditioning channel; it returns the scheduler's
    exact target (noise, velocity or clean sample) for it."""

    n_time = 2

    def __init__(self, scheduler: DDIMScheduler, scale: DoseScale | None) -> None:
        super().__init__()
        self.ab = scheduler.alphas_cumprod
        self.kind = scheduler.prediction_type
        self.use(scale)

    def use(self, target: object) -> None:
        """Compute the clean value with ``target`` (a DoseScale, or the PriorResidualDenoiser that wraps
        this oracle: kept outside the module tree, which must not contain itself)."""
        object.__setattr__(self, "scale", target)

    def forward(self, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.ab[t.long()].view(-1, 1, 1, 1, 1).to(x.dtype)
        x_t, x0 = x[:, :1], self.scale.to_unit(x[:, 1:2], x[:, 1:])
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return {"epsilon": eps, "sample": x0, "v_prediction": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[self.kind]


class Pointwise(nn.Module):
    """A denoiser that is a fixed pointwise function of the noisy dose (no spatial context)."""

    n_time = 2

    def forward(self, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(x[:, :1]) + 0.1 * x[:, 1:2] + 0.01 * c.sum(1).view(-1, 1, 1, 1, 1)


def _dose() -> torch.Tensor:
    """A smooth relative dose on a 20 × 18 × 16 grid, 0 .. 1.1."""
    g = torch.stack(torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (20, 18, 16)), indexing="ij"))
    return (1.1 * torch.exp(-(g**2).sum(0) * 1.5))[None, None]


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_a_perfect_denoiser_returns_the_clean_dose(kind, eta):
    """Known answer: whatever the noise, the prediction type or eta, a sampler whose denoiser is
    exact ends on the clean dose, through a sliding window smaller than the volume."""
    scheduler = DDIMScheduler(T, schedule="cosine", prediction_type=kind, clip_sample=True)
    sampler = DiffusionSampler(scheduler, steps=8, eta=eta, samples=2, seed=3)
    dose = _dose()
    window = SlidingWindowInferer(roi_size=(8, 8, 8), overlap=0.5, mode="gaussian")
    out = sampler.sample(Oracle(scheduler, sampler.scale), dose, torch.zeros(1, 13), window)
    assert out.shape == (2, 1, 20, 18, 16)
    torch.testing.assert_close(out, dose.expand(2, -1, -1, -1, -1), atol=2e-4, rtol=0)


def test_a_sample_is_one_volume_and_reproducible():
    """One noise field for the whole volume: the sliding-window sample equals the whole-volume one
    (no seams where windows meet); the same seed gives the same sample, another seed another."""
    scheduler = DDIMScheduler(T, schedule="cosine", prediction_type="sample")
    cond, c = _dose(), torch.rand(1, 13)
    whole = SlidingWindowInferer(roi_size=(20, 18, 16))
    window = SlidingWindowInferer(roi_size=(8, 8, 8), overlap=0.25, mode="gaussian")
    a = DiffusionSampler(scheduler, steps=5, seed=7).sample(Pointwise(), cond, c, window)
    torch.testing.assert_close(a, DiffusionSampler(scheduler, steps=5, seed=7).sample(Pointwise(), cond, c, whole))
    assert torch.equal(a, DiffusionSampler(scheduler, steps=5, seed=7).sample(Pointwise(), cond, c, window))
    b = DiffusionSampler(scheduler, steps=5, seed=8).sample(Pointwise(), cond, c, window)
    assert (a - b).abs().mean() > 0.01


def test_wrong_sample_and_step_counts_say_what_to_pass():
    scheduler = DDIMScheduler(100, schedule="cosine")
    with pytest.raises(ValueError, match="at most 100"):
        DiffusionSampler(scheduler, steps=101)
    with pytest.raises(ValueError, match=r"at least 1.*--samples"):
        DiffusionSampler(scheduler, samples=0)
    sampler = DiffusionSampler(scheduler, steps=10)
    with pytest.raises(ValueError, match="at most 100"):
        sampler.sample(Pointwise(), _dose(), torch.zeros(1, 13), SlidingWindowInferer((8, 8, 8)), steps=500)


def test_dose_scale_maps_the_range_to_plus_minus_one():
    scale = DoseScale(1.25)
    rel = torch.tensor([0.0, 0.625, 1.25])
    torch.testing.assert_close(scale.to_unit(rel), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(scale.from_unit(scale.to_unit(rel)), rel)
    assert scale.from_unit(torch.tensor([-1.5])).item() == 0.0  # never negative


class Zero(nn.Module):
    """A denoiser that predicts a clean value of 0 everywhere (prediction type ``sample``)."""

    n_time = 2

    def forward(self, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :1])


def _prior() -> torch.Tensor:
    """A beam dose prior unlike the dose but within the residual's range (±0.625) of it: 0.6 × the
    dose plus a ramp along the first axis (0 .. 0.2)."""
    return 0.6 * _dose() + torch.linspace(0.0, 0.2, 20).view(1, 1, 20, 1, 1)


@pytest.mark.parametrize("kind", ["epsilon", "sample"])
def test_the_residual_to_the_prior_is_diffused_and_added_back(kind):
    """Known answers: a perfect denoiser of the residual ends on the clean dose; a denoiser that
    predicts a residual of 0 ends exactly on the prior (the dose target would end on 0.625 × Rx)."""
    scheduler = DDIMScheduler(T, schedule="cosine", prediction_type=kind, clip_sample=True)
    sampler = DiffusionSampler(scheduler, steps=8, samples=1, seed=3)
    dose, prior = _dose(), _prior()
    cond = torch.cat([dose, prior], dim=1)  # the prior is the last conditioning channel
    oracle = Oracle(scheduler, None)
    wrapped = PriorResidualDenoiser(oracle, prior_channels=1)
    oracle.use(wrapped)
    window = SlidingWindowInferer(roi_size=(8, 8, 8), overlap=0.5, mode="gaussian")
    torch.testing.assert_close(sampler.sample(wrapped, cond, torch.zeros(1, 13), window), dose, atol=2e-4, rtol=0)
    sampler = DiffusionSampler(DDIMScheduler(T, schedule="cosine", prediction_type="sample"), steps=4)
    at_prior = sampler.sample(PriorResidualDenoiser(Zero()), cond, torch.zeros(1, 13), window)
    torch.testing.assert_close(at_prior, prior, atol=1e-6, rtol=0)
    at_middle = sampler.sample(Zero(), cond, torch.zeros(1, 13), window)
    torch.testing.assert_close(at_middle, torch.full_like(dose, 0.625), atol=1e-6, rtol=0)


def test_the_residual_target_maps_the_same_gy_per_unit_as_the_dose():
    wrapped = PriorResidualDenoiser(Zero(), prior_channels=2, dose_range=1.25)
    cond = torch.cat([torch.rand(1, 3, 4, 4, 4), torch.full((1, 2, 4, 4, 4), 0.4)], dim=1)  # prior 0.8
    rel = torch.full((1, 1, 4, 4, 4), 1.1)
    torch.testing.assert_close(wrapped.to_unit(rel, cond), torch.full_like(rel, 0.3 * 2 / 1.25))
    torch.testing.assert_close(wrapped.from_unit(wrapped.to_unit(rel, cond), cond), rel)
    assert float(wrapped.from_unit(torch.full_like(rel, -1.0), torch.zeros(1, 2, 4, 4, 4)).min()) == 0.0
    dose_step = DoseScale(1.25).to_unit(rel) - DoseScale(1.25).to_unit(rel - 0.1)
    torch.testing.assert_close(wrapped.to_unit(rel, cond) - wrapped.to_unit(rel - 0.1, cond), dose_step)


def test_training_on_the_residual_has_zero_loss_for_its_oracle():
    """The module trains the wrapped denoiser on the residual: the residual's oracle has zero loss,
    the dose's oracle (same network, unwrapped) does not."""
    torch.manual_seed(0)
    scheduler = DDPMScheduler(T, schedule="cosine", prediction_type="sample")
    sampler = DiffusionSampler(DDIMScheduler(T, schedule="cosine", prediction_type="sample"), steps=4)
    batch = {"input": torch.cat([_dose(), _prior()], dim=1), "dose": _dose(), "constraints": torch.rand(1, 3)}
    oracle = Oracle(scheduler, None)
    wrapped = PriorResidualDenoiser(oracle, prior_channels=1)
    oracle.use(wrapped)
    module = DiffusionDoseModule(wrapped, scheduler, sampler, roi_size=(8, 8, 8), val_steps=4)
    assert float(module.training_step(batch, 0)) < 1e-10
    oracle.use(sampler.scale)
    assert (
        float(DiffusionDoseModule(oracle, scheduler, sampler, roi_size=(8, 8, 8), val_steps=4).training_step(batch, 0))
        < 1e-10
    )
    assert float(module.training_step(batch, 0)) > 1e-3  # the wrapped module's target is the residual


def test_the_residual_denoiser_refuses_what_it_cannot_wrap():
    with pytest.raises(ValueError, match="prior_channels >= 1"):
        PriorResidualDenoiser(Zero(), prior_channels=0)
    plain = ConditionedUNet(3, in_channels=2, channels=(8, 16), n_condition=3, groups=4)
    with pytest.raises(ValueError, match="wraps a diffusion denoiser"):
        PriorResidualDenoiser(plain)
    with pytest.raises(ValueError, match="wraps a diffusion denoiser"):
        PriorResidualDenoiser(PriorResidualDenoiser(Zero()))


def test_a_residual_checkpoint_names_the_config_it_needs(tmp_path):
    """A denoiser of the residual does not load into a denoiser of the dose (or the reverse), from a
    Lightning checkpoint or models/model.pt; the error names `residual`. Both are diffusion models."""
    from vmat_monai.engine.checkpoint_weights import checkpoint_family_of, load_network_weights

    wrapped = PriorResidualDenoiser(_tiny_denoiser())
    torch.save({"state_dict": {f"network.{k}": v for k, v in wrapped.state_dict().items()}}, tmp_path / "r.ckpt")
    torch.save(wrapped.state_dict(), tmp_path / "model.pt")
    torch.save(
        {"state_dict": {f"network.{k}": v for k, v in _tiny_denoiser().state_dict().items()}}, tmp_path / "d.ckpt"
    )
    for path in (tmp_path / "r.ckpt", tmp_path / "model.pt"):
        assert checkpoint_family_of(path) == "diffusion"
        load_network_weights(PriorResidualDenoiser(_tiny_denoiser()), path)
        with pytest.raises(RuntimeError, match=r"residual to the beam dose prior: add `residual` to --config"):
            load_network_weights(_tiny_denoiser(), path)
    with pytest.raises(RuntimeError, match=r"denoiser of the dose itself.*drop `residual`"):
        load_network_weights(PriorResidualDenoiser(_tiny_denoiser()), tmp_path / "d.ckpt")


def _tiny_denoiser(spatial_dims: int = 3) -> ConditionedUNet:
    return ConditionedUNet(
        spatial_dims, in_channels=2, channels=(8, 16), n_condition=3, groups=4, out_activation=None, n_time=16
    )


def test_the_timestep_network_needs_timesteps_and_the_regression_network_refuses_them():
    x = torch.zeros(1, 2, 8, 8, 8)
    with pytest.raises(ValueError, match="pass the timesteps"):
        _tiny_denoiser()(x, torch.zeros(1, 3))
    plain = ConditionedUNet(3, in_channels=2, channels=(8, 16), n_condition=3, groups=4)
    with pytest.raises(ValueError, match="not a diffusion denoiser"):
        plain(x, torch.zeros(1, 3), torch.tensor([5]))
    with pytest.raises(ValueError, match="not a diffusion denoiser"):
        DiffusionDoseModule(plain)
    assert denoise(_tiny_denoiser(), x, torch.zeros(1, 3), torch.tensor([5])).shape == (1, 1, 8, 8, 8)


@pytest.mark.parametrize("kind", ["sample", "v_prediction", "epsilon"])
def test_a_denoiser_learns_a_constant_dose(kind):
    """Trained on images whose dose is 0.8 × Rx everywhere, DDIM samples are 0.8 (in 2D to keep it
    fast; the module works in any dimension). Predicting the clean dose (the bundle default) gets
    every pixel within 0.02; noise or velocity prediction gets the mean but leaves outlier pixels
    after this little training (their error is amplified at the high-noise steps)."""
    torch.manual_seed(0)
    scheduler = DDPMScheduler(T, schedule="cosine", prediction_type=kind)
    sampler = DiffusionSampler(DDIMScheduler(T, schedule="cosine", prediction_type=kind), steps=10)
    module = DiffusionDoseModule(_tiny_denoiser(2), scheduler, sampler, roi_size=(8, 8), val_steps=10)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(STEPS):
        batch = {
            "input": torch.rand(8, 1, 8, 8),
            "dose": torch.full((8, 1, 8, 8), 0.8),
            "constraints": torch.rand(8, 3),
        }
        opt.zero_grad()
        module.training_step(batch, 0).backward()
        opt.step()
    module.eval()
    samples = module.predict_volume(torch.rand(1, 1, 12, 12), torch.rand(1, 3), samples=3)
    assert samples.shape == (3, 1, 12, 12)
    assert abs(float(samples.mean()) - 0.8) < (0.01 if kind == "sample" else 0.08)
    if kind == "sample":
        assert float((samples - 0.8).abs().max()) < 0.02


def test_a_sampler_alone_gives_the_module_its_schedule_and_prediction_type():
    """Prediction builds the module from the sampler only: a v-prediction, linear-schedule sampler
    must not meet a default training scheduler of another kind."""
    sampling = DDIMScheduler(200, schedule="linear_beta", prediction_type="v_prediction")
    module = DiffusionDoseModule(_tiny_denoiser(), sampler=DiffusionSampler(sampling, steps=4), val_steps=4)
    assert module.scheduler.prediction_type == "v_prediction" and module.scheduler.num_train_timesteps == 200
    torch.testing.assert_close(module.scheduler.alphas_cumprod, sampling.alphas_cumprod)
    with pytest.raises(ValueError, match="must match the training one"):
        DiffusionDoseModule(_tiny_denoiser(), DDPMScheduler(200, prediction_type="epsilon"), DiffusionSampler(sampling))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_the_clean_estimate_inverts_the_noising(kind):
    """Known answer: from an exact denoiser's prediction for the noisy dose, the module's clean
    estimate is the clean dose, whatever the prediction type and timestep."""
    scheduler = DDPMScheduler(T, schedule="cosine", prediction_type=kind)
    sampler = DiffusionSampler(DDIMScheduler(T, schedule="cosine", prediction_type=kind), steps=4)
    module = DiffusionDoseModule(_tiny_denoiser(), scheduler, sampler, roi_size=(8, 8, 8), val_steps=4)
    clean = sampler.scale.to_unit(_dose()).expand(3, -1, -1, -1, -1)
    noise, steps = torch.randn_like(clean), torch.tensor([0, 400, 900])
    noisy = scheduler.add_noise(clean, noise, steps)
    exact = Oracle(scheduler, sampler.scale)(torch.cat([noisy, _dose().expand(3, -1, -1, -1, -1)], 1), None, steps)
    torch.testing.assert_close(module.clean_estimate(exact, noisy, steps), clean, atol=1e-4, rtol=0)


def _dose_batch() -> dict[str, torch.Tensor]:
    dose = _dose()
    body = torch.ones_like(dose)
    body[..., :2] = 0
    return {
        "input": torch.cat([dose, _prior()], dim=1),
        "dose": dose,
        "constraints": torch.rand(1, 3),
        "masks": (dose > 0.9).float(),
        "body": body,
        "prescription_gy": torch.tensor([70.0]),
    }


def test_the_dose_loss_acts_on_the_clean_dose_estimate():
    """With the U-Net's dose loss, the training loss is the denoising MSE plus the weighted dose loss of
    the clean-dose estimate: zero for the residual's exact denoiser; for a denoiser that predicts the
    middle of the range (0.625 × Rx), exactly MSE + weight × mean |0.625 − dose| in the body."""
    from vmat_monai.losses import CombinedDoseLoss, DoseMAELoss

    torch.manual_seed(0)
    scheduler = DDPMScheduler(T, schedule="cosine", prediction_type="sample")
    sampler = DiffusionSampler(DDIMScheduler(T, schedule="cosine", prediction_type="sample"), steps=4)
    batch = _dose_batch()
    loss = CombinedDoseLoss({"mae": DoseMAELoss(body_only=True)}, {"mae": 1.0})
    oracle = Oracle(scheduler, None)
    wrapped = PriorResidualDenoiser(oracle, prior_channels=1)
    oracle.use(wrapped)
    kw = {"roi_size": (8, 8, 8), "val_steps": 4, "loss": loss, "loss_weight": 2.0}
    assert float(DiffusionDoseModule(wrapped, scheduler, sampler, **kw).training_step(batch, 0)) < 1e-6
    mse = float((sampler.scale.to_unit(batch["dose"]) ** 2).mean())
    mae = float((0.625 - batch["dose"]).abs()[batch["body"] > 0].mean())
    got = float(DiffusionDoseModule(Zero(), scheduler, sampler, **kw).training_step(batch, 0))
    assert got == pytest.approx(mse + 2.0 * mae, rel=1e-5)
    without = float(
        DiffusionDoseModule(Zero(), scheduler, sampler, roi_size=(8, 8, 8), val_steps=4).training_step(batch, 0)
    )
    assert without == pytest.approx(mse, rel=1e-5)
    with pytest.raises(ValueError, match="loss_weight must be >= 0"):
        DiffusionDoseModule(Zero(), scheduler, sampler, loss=loss, loss_weight=-1.0)


def test_the_dose_loss_trains_the_denoiser_through_its_clean_estimate():
    """The dose loss's gradient reaches the denoiser for every prediction type (through the
    inversion of the noising for noise and velocity prediction): with the same noise and timestep,
    the weights' gradient with the loss differs from the gradient of the denoising MSE alone."""
    from vmat_monai.losses import AsymmetricPTVLoss, CombinedDoseLoss

    batch = {k: v[..., :16, :16, :16] if v.ndim == 5 else v for k, v in _dose_batch().items()}
    for kind in ("epsilon", "v_prediction", "sample"):
        scheduler = DDPMScheduler(T, schedule="cosine", prediction_type=kind)
        sampler = DiffusionSampler(DDIMScheduler(T, schedule="cosine", prediction_type=kind), steps=4)
        torch.manual_seed(0)
        net = ConditionedUNet(
            3, in_channels=3, channels=(8, 16), n_condition=3, groups=4, out_activation=None, n_time=16
        )
        grads = []
        for loss in (None, CombinedDoseLoss({"ptv": AsymmetricPTVLoss(target_channels=[0])}, {"ptv": 1.0})):
            module = DiffusionDoseModule(net, scheduler, sampler, roi_size=(8, 8, 8), val_steps=4, loss=loss)
            net.zero_grad()
            torch.manual_seed(1)  # the same noise and timestep for both
            module.training_step(batch, 0).backward()
            grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
        assert module.loss.last_terms["ptv"] > 0.0, kind
        assert float((grads[1] - grads[0]).abs().max()) > 1e-6, kind
