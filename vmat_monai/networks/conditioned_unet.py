"""A 3D U-Net conditioned on the constraint vector through FiLM, built from MONAI blocks.

Each encoder and decoder level, and a bottleneck at the deepest level, is two ``Convolution``
blocks (3×3×3, GroupNorm, SiLU) followed by FiLM: an MLP maps the constraint vector to a
per-channel scale and shift for every level (``h * (1 + gamma) + beta``; zero-initialised, so
training starts from the plain U-Net).
The output passes through softplus, so dose is never negative (``out_activation=None`` leaves
it linear, for a correction added to a first guess: :class:`~vmat_monai.networks.PriorResidual`).

For a diffusion denoiser (``n_time > 0``) the FiLM MLPs also receive a sinusoidal embedding of
the diffusion timestep (MONAI's ``get_timestep_embedding``, ``n_time`` values appended to the
standardised constraints), and ``forward`` takes the timesteps as a third argument.

The constraint vector is standardised before the MLPs with the training set's per-entry mean
and standard deviation, which the network stores as buffers (so a checkpoint carries them):
a goal whose values span 0.05–0.15 would otherwise move the MLP's input by a few hundredths and
its effect would take many more steps to learn. The Lightning module sets them once, at the
start of the first fit (:meth:`ConditionedUNet.set_condition_statistics`); until then the
vector is used as it is.

Defaults are the original research model: 4 levels of 48/96/192/384 channels, 9 input channels
(CT + 8 signed distances), 22 M parameters. :func:`cpu_conditioned_unet` is a faster
variant: a strided first layer (the network works at half resolution) and narrower levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

__all__ = ["ConditionedUNet", "FiLM", "cpu_conditioned_unet"]


class FiLM(nn.Module):
    """Feature-wise linear modulation of (B, C, ...) features by a (B, K) condition."""

    def __init__(self, n_condition: int, channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_condition, hidden), nn.SiLU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.mlp(c).chunk(2, dim=1)
        while gamma.dim() < h.dim():  # (N, C) -> (N, C, 1, ...): a loop TorchScript can compile
            gamma, beta = gamma.unsqueeze(-1), beta.unsqueeze(-1)
        return h * (1 + gamma) + beta


def _block(spatial_dims: int, cin: int, cout: int, groups: int, stride: int = 1) -> Convolution:
    return Convolution(
        spatial_dims,
        cin,
        cout,
        strides=stride,
        kernel_size=3,
        act=("swish", {"alpha": 1.0}),
        norm=("group", {"num_groups": min(groups, cout)}),
    )


class _Level(nn.Module):
    def __init__(self, spatial_dims: int, cin: int, cout: int, groups: int, n_condition: int) -> None:
        super().__init__()
        self.conv1 = _block(spatial_dims, cin, cout, groups)
        self.conv2 = _block(spatial_dims, cout, cout, groups)
        self.film = FiLM(n_condition, cout)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.film(self.conv2(self.conv1(x)), c)


class ConditionedUNet(nn.Module):
    """3D U-Net with FiLM conditioning on a constraint vector.

    Args:
        spatial_dims: 3 for volumes (2 works for tests and slices).
        in_channels: input channels (CT + signed distances).
        out_channels: output channels (1: dose / Rx).
        channels: feature channels per level, shallow to deep.
        n_condition: length of the constraint vector.
        groups: GroupNorm groups.
        strided_stem: downsample by 2 in the first layer and upsample the output (faster on CPU).
        out_activation: ``"softplus"`` (dose >= 0) or None (linear output).
        n_time: length of the timestep embedding given to FiLM (0: no timestep, a plain regression
            network; > 0: a diffusion denoiser, ``forward(x, constraints, timesteps)``).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 9,
        out_channels: int = 1,
        channels: Sequence[int] = (48, 96, 192, 384),
        n_condition: int = 13,
        groups: int = 8,
        strided_stem: bool = False,
        out_activation: str | None = "softplus",
        n_time: int = 0,
    ) -> None:
        super().__init__()
        if n_time < 0 or n_time % 2:
            raise ValueError(f"n_time must be 0 or a positive even number, got {n_time}")
        if len(channels) < 2:
            raise ValueError("at least two levels are needed")
        if out_activation not in ("softplus", None):
            raise ValueError(f"out_activation must be 'softplus' or None, got {out_activation!r}")
        self.out_activation = out_activation
        ch = list(channels)
        self.n_condition = n_condition
        self.n_time = n_time
        n_film = n_condition + n_time
        self.stem = _block(spatial_dims, in_channels, ch[0], groups, stride=2) if strided_stem else None
        first_in = ch[0] if strided_stem else in_channels
        self.enc = nn.ModuleList(
            [_Level(spatial_dims, first_in if i == 0 else ch[i - 1], ch[i], groups, n_film) for i in range(len(ch))]
        )
        self.down = nn.ModuleList([_block(spatial_dims, ch[i], ch[i], groups, stride=2) for i in range(len(ch) - 1)])
        self.bottleneck = _Level(spatial_dims, ch[-1], ch[-1], groups, n_film)
        self.up = nn.ModuleList(
            [UpSample(spatial_dims, ch[i + 1], ch[i], scale_factor=2, mode="deconv") for i in range(len(ch) - 1)]
        )
        self.dec = nn.ModuleList([_Level(spatial_dims, 2 * ch[i], ch[i], groups, n_film) for i in range(len(ch) - 1)])
        self.head_up = UpSample(spatial_dims, ch[0], ch[0], scale_factor=2, mode="deconv") if strided_stem else None
        self.head = Convolution(spatial_dims, ch[0], out_channels, kernel_size=1, conv_only=True)
        self.register_buffer("condition_mean", torch.zeros(n_condition))
        self.register_buffer("condition_scale", torch.ones(n_condition))
        self.register_buffer("condition_fitted", torch.zeros((), dtype=torch.bool))
        if n_time:  # marks a denoiser's state dict, so a checkpoint names its model family
            self.register_buffer("diffusion_n_time", torch.tensor(n_time))

    def set_condition_statistics(self, vectors: torch.Tensor, min_std: float = 0.01) -> None:
        """Standardise the constraints with the mean and standard deviation of ``vectors``
        ((N, K), the training cases' constraint vectors). An entry constant over the training set
        is only centred; other standard deviations are floored at ``min_std`` (vector units)."""
        v = torch.as_tensor(vectors, dtype=torch.float64)
        if v.ndim != 2 or v.shape[1] != self.n_condition or v.shape[0] == 0:
            raise ValueError(f"constraint vectors must be (N > 0, {self.n_condition}), got {tuple(v.shape)}")
        if not torch.isfinite(v).all():
            raise ValueError("constraint vectors contain NaN or infinite values")
        std = v.std(dim=0, unbiased=False)
        scale = torch.where(std < 1e-6, torch.ones_like(std), 1.0 / std.clamp_min(min_std))
        self.condition_mean.copy_(v.mean(dim=0).to(self.condition_mean))
        self.condition_scale.copy_(scale.to(self.condition_scale))
        self.condition_fitted.fill_(True)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # checkpoints written before the standardisation existed: use the vector as it is
        identity = {
            "condition_mean": torch.zeros_like(self.condition_mean),
            "condition_scale": torch.ones_like(self.condition_scale),
            "condition_fitted": torch.zeros_like(self.condition_fitted),
        }
        for name, value in identity.items():
            state_dict.setdefault(prefix + name, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self, x: torch.Tensor, constraints: torch.Tensor, timesteps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Args:
        x: (B, in_channels, *spatial); spatial sizes divisible by 2**(levels - 1) (×2 with a strided stem).
        constraints: (B, n_condition), a tensor or array-like.
        timesteps: (B,) diffusion timesteps; required when ``n_time > 0``, refused otherwise.
        """
        if not isinstance(constraints, torch.Tensor):  # array-like, e.g. from a command line
            constraints = torch.as_tensor(constraints, dtype=x.dtype, device=x.device)
        if constraints.ndim != 2 or constraints.shape[1] != self.n_condition:
            raise ValueError(f"constraints must be (batch, {self.n_condition}), got {tuple(constraints.shape)}")
        c = (constraints.to(x.dtype) - self.condition_mean.to(x.dtype)) * self.condition_scale.to(x.dtype)
        if (timesteps is None) != (self.n_time == 0):
            raise ValueError(
                "this network is a diffusion denoiser: pass the timesteps"
                if self.n_time
                else "this network takes no timesteps (n_time=0): it is the regression U-Net, not a diffusion denoiser"
            )
        if timesteps is not None:
            t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
            c = torch.cat([c, get_timestep_embedding(t, self.n_time).to(x.dtype)], dim=1)
        h = self.stem(x) if self.stem is not None else x
        skips = []
        for i, level in enumerate(self.enc):
            h = level(h, c)
            if i < len(self.down):
                skips.append(h)
                h = self.down[i](h)
        h = self.bottleneck(h, c)
        for i in reversed(range(len(self.dec))):
            h = self.dec[i](torch.cat([self.up[i](h), skips[i]], dim=1), c)
        if self.head_up is not None:
            h = self.head_up(h)
        out = self.head(h)
        return nn.functional.softplus(out) if self.out_activation == "softplus" else out


def cpu_conditioned_unet(
    in_channels: int = 9,
    n_condition: int = 13,
    channels: Sequence[int] = (16, 32, 64, 128),
    out_activation: str | None = "softplus",
    n_time: int = 0,
) -> ConditionedUNet:
    """The CPU variant: strided first layer and narrower levels (same interface)."""
    return ConditionedUNet(
        3,
        in_channels,
        1,
        channels,
        n_condition,
        groups=8,
        strided_stem=True,
        out_activation=out_activation,
        n_time=n_time,
    )
