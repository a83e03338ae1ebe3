"""The conditional dose diffusion model: DDIM sampling with known answers, reproducibility, a
denoiser that learns a constant dose, and the errors for wrong inputs."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

from vmat_monai.engine.diffusion_module import DiffusionDoseModule
from vmat_monai.engine.diffusion_sampling import DiffusionSampler, DoseScale, denoise
from vmat_monai.networks import ConditionedUNet

T = 1000
STEPS = 600


class Oracle(nn.Module):
    """A perfect denoiser: the clean dose is the conditioning channel; it returns the scheduler's
    exact target (noise, velocity or clean sample) for it."""

    n_time = 2

    def __init__(self, scheduler: DDIMScheduler, scale: DoseScale) -> None:
        super().__init__()
        self.ab = scheduler.alphas_cumprod
        self.kind = scheduler.prediction_type
        self.scale = scale

    def forward(self, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.ab[t.long()].view(-1, 1, 1, 1, 1).to(x.dtype)
        x_t, x0 = x[:, :1], self.scale.to_unit(x[:, 1:2])
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
